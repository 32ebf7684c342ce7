"""Small digits checkpoints and exported artifacts shared by the exporter tests (built once per session)."""

from __future__ import annotations

import pytest
import torch

from compressor.checkpoint import save_checkpoint
from compressor.models import create_model
from compressor.workflows import model_kwargs

TINY_CNN = {"width": 8, "hidden": 32}


def tiny_cnn(digits, seed: int = 0) -> torch.nn.Module:
    """An untrained small cnn-small for digits (exports do not need trained weights)."""
    torch.manual_seed(seed)
    return create_model("cnn-small", **model_kwargs(digits.info), **TINY_CNN).eval()


@pytest.fixture(scope="session")
def digits_ckpt(digits, tmp_path_factory):
    """A tiny cnn-small checkpoint that records the digits dataset."""
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    save_checkpoint(path, tiny_cnn(digits), arch="cnn-small", arch_kwargs={**model_kwargs(digits.info), **TINY_CNN},
                    dataset=digits.info.as_dict())
    return path


@pytest.fixture(scope="session")
def aoti_package(digits, tmp_path_factory):
    """The tiny cnn-small compiled by AOTInductor for batch sizes 1..16 (compiling takes ~30 s: done once)."""
    from exporters.aoti import export_aoti

    path = tmp_path_factory.mktemp("aoti") / "tiny.pt2"
    model = tiny_cnn(digits)
    x = digits.split("test").head(20).float_images()
    result = export_aoti(model, path, input_shape=digits.info.input_shape, batch_sizes=[1, 16], sample_inputs=x)
    return path, model, result


@pytest.fixture(scope="session")
def onnx_file(digits, tmp_path_factory):
    """The tiny cnn-small (same weights as `digits_ckpt`) exported to ONNX."""
    from exporters.onnx import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(tiny_cnn(digits), path, input_shape=digits.info.input_shape)
    return path
