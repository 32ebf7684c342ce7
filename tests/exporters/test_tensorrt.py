"""TensorRT: the missing-package path here; engine builds only where TensorRT and a GPU exist (skipped otherwise)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from compressor.errors import CompressorError
from exporters.tensorrt import TensorRTExporter, profile_shapes
from tests.conftest import cli

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
GPU = torch.cuda.is_available()


def test_profile_covers_the_batch_sizes():
    assert profile_shapes([64, 1], (3, 32, 32)) == ((1, 3, 32, 32), (64, 3, 32, 32), (64, 3, 32, 32))
    assert profile_shapes([1, 8, 64], (1, 8, 8))[1] == (8, 1, 8, 8)
    with pytest.raises(CompressorError, match=">= 1"):
        profile_shapes([0, 4], (1, 8, 8))


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the missing-package path cannot be exercised")
def test_missing_tensorrt_names_the_extra(capsys, digits_ckpt, tmp_path):
    with pytest.raises(CompressorError, match=r"pip install 'compressor\[tensorrt\]'"):
        TensorRTExporter.check("fp16", "cuda")
    code, _, err = cli(capsys, "export", str(digits_ckpt), "--format", "tensorrt", "-o", str(tmp_path / "m.engine"))
    assert code == 2 and "pip install 'compressor[tensorrt]'" in err and "pypi.nvidia.com" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.skipif(not (HAS_TRT and GPU), reason="needs the tensorrt package and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_builds_and_matches(capsys, digits_ckpt, tmp_path, precision):
    import json

    out = tmp_path / f"m-{precision}.engine"
    code, text, err = cli(capsys, "export", str(digits_ckpt), "--format", "tensorrt", "--precision", precision,
                          "--batch-sizes", "1,32", "-o", str(out), "--json")
    assert code == 0, err
    rep = json.loads(text)
    assert rep["max_abs_diff"] <= rep["tolerance"] and rep["details"]["profile"]["max"][0] == 32
    from exporters.tensorrt import TensorRTRunner

    runner = TensorRTRunner(out)
    with pytest.raises(CompressorError, match="outside .*optimisation profile 1..32"):
        runner(torch.rand(33, 1, 8, 8))


def test_runner_never_lets_an_engine_load_host_code(monkeypatch, tmp_path):
    """A version-compatible engine may embed a runtime library; the runner turns that off before deserialising."""
    import types

    from exporters import tensorrt as trt_module

    seen = []

    class Runtime:
        engine_host_code_allowed = True

        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            seen.append(self.engine_host_code_allowed)
            return None

    logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    fake = types.SimpleNamespace(Runtime=Runtime, Logger=logger)
    monkeypatch.setattr(trt_module, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(trt_module.torch.cuda, "is_available", lambda: True)
    (tmp_path / "m.engine").write_bytes(b"not an engine")
    with pytest.raises(CompressorError, match="cannot load"):
        trt_module.TensorRTRunner(tmp_path / "m.engine")
    assert seen == [False]
