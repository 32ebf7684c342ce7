"""A ``torch.export`` program (.pt2) as a module every command can run: eval mode, any batch size, its layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..batching import run_in_range

# aten ops whose second argument is a layer's weight, and the layer type they stand for
_WEIGHT_OPS = {"conv1d": "Conv1d", "conv2d": "Conv2d", "conv3d": "Conv3d", "convolution": "Conv2d",
               "linear": "Linear"}


def _op_name(target: Any) -> str:
    """``aten.conv2d.default`` -> ``conv2d``."""
    return str(getattr(target, "__name__", target)).split(".")[0]


def _range(program: torch.export.ExportedProgram, shape: tuple) -> tuple[int, int | None]:
    """(min, max or None) of a dynamic batch dimension, as the program's range constraints allow it."""
    vr = program.range_constraints.get(shape[0].node.expr) if shape else None
    if vr is None:
        return 1, None
    try:
        hi: int | None = int(vr.upper)
    except Exception:  # unbounded (int_oo)
        hi = None
    return max(1, int(vr.lower)), hi


class ExportedModel(nn.Module):
    """Runs an ExportedProgram's module: the program's graph is frozen in the mode it was exported in, so
    ``train()/eval()`` only set a flag, and a program traced for a static batch size B runs any batch in chunks
    of B (the last one padded)."""

    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__()
        self.program = program.module()
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        user_inputs = list(program.graph_signature.user_inputs)
        val = placeholders[user_inputs[0]].meta.get("val") if user_inputs else None
        shape = tuple(val.shape) if val is not None else ()
        self.static_batch = shape[0] if shape and isinstance(shape[0], int) else None
        self.batch_range = (self.static_batch, self.static_batch) if self.static_batch else _range(program, shape)
        self.input_shape = tuple(int(s) for s in shape[1:]) if shape and all(isinstance(s, int) for s in shape[1:]) \
            else ()
        params = dict(program.graph_signature.inputs_to_parameters)
        state = program.state_dict
        layers = []
        for node in program.graph.nodes:
            kind = _WEIGHT_OPS.get(_op_name(node.target)) if node.op == "call_function" else None
            arg = node.args[1] if kind and len(node.args) > 1 else None
            fqn = params.get(getattr(arg, "name", None))
            if fqn is not None and fqn in state and state[fqn].dim() >= 2:
                layers.append((fqn.removesuffix(".weight"), kind if state[fqn].dim() != 3 else "Conv1d", fqn))
        self._layers = layers
        tensors = {**state, **dict(getattr(program, "constants", {}) or {})}
        mean = next((v for k, v in tensors.items() if k.endswith("normalize.mean")), None)
        std = next((v for k, v in tensors.items() if k.endswith("normalize.std")), None)
        self._normalization = None if mean is None or std is None or not isinstance(mean, torch.Tensor) else {
            "mean": [round(float(v), 6) for v in mean.flatten()], "std": [round(float(v), 6) for v in std.flatten()]}

    def normalization(self) -> dict[str, list[float]] | None:
        """Mean and std of a `Normalize` the program was exported with (its ``normalize.mean/std`` buffers)."""
        return self._normalization

    def train(self, mode: bool = True) -> "ExportedModel":
        """Record the mode; the exported graph runs as it was exported (a GraphModule cannot switch)."""
        self.training = mode
        return self

    def prunable_weights(self) -> list[tuple[str, str, torch.Tensor]]:
        """(layer, type, weight) of every conv / linear the graph calls, read from the program's parameters."""
        named = dict(self.program.named_parameters())
        named.update(dict(self.program.named_buffers()))
        return [(name, kind, named[fqn]) for name, kind, fqn in self._layers if fqn in named]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.static_batch
        if b is None or len(x) == b:
            return self.program(x)
        return run_in_range(self.program, x, b, b)
