"""Shared by the transform tests: checkpoints of small models, ONNX round trips and transform application."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from compressor.checkpoint import load_model, save_checkpoint
from compressor.models import create_model
from pruners.transforms import TransformContext, apply_transforms, parse_transforms


def make(arch: str, in_chans: int = 1, seed: int = 0, **kwargs) -> tuple[nn.Module, dict]:
    """A fresh model and its create_model keyword arguments."""
    torch.manual_seed(seed)
    kw = {"num_classes": 10, "in_chans": in_chans, **kwargs}
    return create_model(arch, **kw).eval(), kw


def transform(model: nn.Module, specs: list[str], input_shape: tuple[int, ...], **context) -> list[dict]:
    """Parse, check and apply transform specs; their checkpoint entries."""
    chosen = parse_transforms(specs)
    for t in chosen:
        t.check(model)
    return apply_transforms(model, chosen, TransformContext(input_shape, **context))


def round_trip(tmp_path: Path, model: nn.Module, arch: str, kw: dict, entries: list[dict],
               input_shape: tuple[int, ...]) -> nn.Module:
    """Save with the entries as compression metadata and load back (weights_only, strict)."""
    path = tmp_path / "t.pt"
    save_checkpoint(path, model, arch=arch, arch_kwargs=kw, dataset={"input_shape": list(input_shape)},
                    compression=entries)
    torch.load(path, weights_only=True)  # no pickled objects inside
    return load_model(path).model.eval()


def onnx_outputs(model: nn.Module, x: torch.Tensor, path: Path) -> tuple[np.ndarray, set[str]]:
    """Export with torch.onnx (dynamo) and run in ONNX Runtime: the output and the set of op types."""
    import onnx
    import onnxruntime as ort

    torch.onnx.export(model.eval(), (x,), str(path), dynamo=True, optimize=True, verbose=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], ops
