"""Model size and cost: parameters, nonzeros and multiply-accumulates (MACs, from torch.utils.flop_counter)."""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .analysis import is_prunable
from .budget import check_allocation


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers live on the meta device (no weight is copied)."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _module_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of one forward of a batch of 1, per module name ('' = the whole model): counted on the meta device
    (shapes only: a recorded input shape allocates nothing), or for real where the model cannot run there."""
    batch = getattr(model, "static_batch", None) or 1  # an exported program traced for a fixed batch size
    try:
        return _count_macs(_meta_copy(model), torch.empty(batch, *input_shape, device="meta"), batch)
    except Exception:  # data-dependent code, an exported program, ops without meta kernels
        pass
    check_allocation(4 * batch * math.prod(input_shape), f"an input of shape {tuple(input_shape)}",
                     "check the model's recorded input shape")
    param = next(model.parameters(), None)
    x = torch.zeros(batch, *input_shape, device=param.device if param is not None else "cpu")
    return _count_macs(model, x, batch)


def _count_macs(model: nn.Module, x: torch.Tensor, batch: int) -> dict[str, int]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    out = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        _, _, name = key.partition(".")  # keys are '<RootClass>.<module path>'
        out[name] = sum(ops.values()) // 2 // batch  # the counter reports 2 FLOPs per multiply-accumulate
    return out


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass of a single input of `input_shape` (C, H, W) (convs, matmuls)."""
    return _module_macs(model, input_shape).get("", 0)


def _is_reported(module: nn.Module) -> bool:
    # a layer whose weight is structured (e.g. KroneckerLinear) is reported whole, its factors are not
    return hasattr(module, "weight_matrix") or (is_prunable(module) and not getattr(module, "prunable_weight", False))


def _shape_text(module: nn.Module) -> str:
    shapes = getattr(module, "shapes", None)
    if shapes is not None:
        return " ⊗ ".join("x".join(map(str, s)) for s in shapes)
    return "x".join(map(str, module.weight.shape))


def size_report(model: nn.Module, input_shape: Sequence[int] | None) -> dict[str, Any]:
    """Parameters, nonzeros, MACs (None without an input shape) and per-layer shapes, parameters and MACs."""
    macs = _module_macs(model, input_shape) if input_shape else {}
    layers = []
    for name, module in model.named_modules():
        if not _is_reported(module):
            continue
        # its weights (a Kronecker layer's factors), not its bias: counted as the layer statistics count them
        params = [p for n, p in module.named_parameters() if n.rpartition(".")[2] != "bias"]
        layers.append({"layer": name, "type": type(module).__name__, "shape": _shape_text(module),
                       "params": sum(p.numel() for p in params),
                       "nonzeros": sum(int(torch.count_nonzero(p)) for p in params),
                       "macs": macs.get(name) if input_shape else None})
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "nonzeros": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
            "macs": macs.get("", 0) if input_shape else None, "layers": layers}


def size_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Totals before and after and their ratios (before / after: the reduction factor)."""
    out: dict[str, Any] = {}
    for key in ("parameters", "nonzeros", "macs"):
        b, a = before.get(key), after.get(key)
        out[key] = {"before": b, "after": a, "reduction": (b / a) if b and a else None}
    return out
