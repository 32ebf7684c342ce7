"""Per-layer statistics: parameters, sparsity, singular values, condition numbers, Lipschitz bound."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .errors import CompressorError
from .models.external import user_name

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The weight reshaped to (out, in * kh * kw) — the matrix whose singular values we report."""
    return weight.detach().reshape(weight.shape[0], -1).double()


def condition_number(weight: torch.Tensor) -> dict[str, float]:
    """sigma_max, sigma_min, kappa = sigma_max / sigma_min and the Frobenius norm of one weight.

    A matrix whose sigma_min is at round-off level (numpy's matrix_rank tolerance) is singular: kappa is
    inf, not 1e16. `rank` and `kappa_support` = sigma_max / the smallest nonzero singular value (the
    conditioning of the map on its support) stay informative for such, e.g. highly pruned, layers.
    """
    m = weight_matrix(weight).cpu()
    if not torch.isfinite(m).all():  # LAPACK's SVD fails on NaN/inf with a long LinAlgError
        raise CompressorError(f"a weight of shape {tuple(weight.shape)} holds NaN/inf values, which have no singular "
                              "values: the model is corrupt or its training diverged; use an earlier checkpoint")
    s = torch.linalg.svdvals(m)
    smax, smin = float(s.max()), float(s.min())
    tol = smax * max(m.shape) * torch.finfo(torch.float64).eps
    support = s[s > tol]
    kappa = smax / smin if smin > tol else math.inf
    return {"sigma_max": smax, "sigma_min": smin, "kappa": kappa, "rank": int(support.numel()),
            "kappa_support": smax / float(support.min()) if support.numel() else math.inf,
            "frobenius": float(weight.detach().double().norm())}


def is_prunable(module: nn.Module) -> bool:
    """A Conv/Linear layer, or a module declaring ``prunable_weight = True`` (its `weight` may be sparsified); one
    declaring ``prunable_weight = False`` is not (e.g. a frozen 0/1 shortcut convolution)."""
    flag = getattr(module, "prunable_weight", None)
    return flag is True or (flag is None and isinstance(module, PRUNABLE))


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every prunable layer (Conv, Linear, e.g. Kronecker factors), in model order."""
    return [(n, m) for n, m in model.named_modules() if is_prunable(m)]


def named_weights(model: nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    """(layer, type, weight) of every prunable layer; a model without such modules (an exported program's graph)
    may list them itself with ``prunable_weights()``."""
    own = getattr(model, "prunable_weights", None)
    if callable(own):
        return own()
    return [(n, type(m).__name__, m.weight) for n, m in prunable_layers(model)]


def layer_stats(model: nn.Module, with_svd: bool = True) -> list[dict[str, Any]]:
    """One row per Conv/Linear layer: shape, parameters, nonzeros, sparsity and (optionally) singular values."""
    rows = []
    for name, kind, w in named_weights(model):
        w = w.detach()
        nnz = int(torch.count_nonzero(w))
        row: dict[str, Any] = {"layer": user_name(model, name), "type": kind, "shape": list(w.shape),
                               "params": w.numel(), "nonzeros": nnz, "sparsity": 1.0 - nnz / w.numel()}
        if with_svd:
            row.update(condition_number(w))
        rows.append(row)
    return rows


def model_summary(model: nn.Module, with_svd: bool = True) -> dict[str, Any]:
    """Totals, global sparsity of prunable weights and per-layer statistics of `model`."""
    rows = layer_stats(model, with_svd)
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    prunable = sum(r["params"] for r in rows)
    prunable_nnz = sum(r["nonzeros"] for r in rows)
    summary: dict[str, Any] = {
        "parameters": total, "nonzero_parameters": nonzero, "prunable_parameters": prunable,
        "global_sparsity": 1.0 - prunable_nnz / prunable if prunable else 0.0, "layers": rows,
    }
    if with_svd and rows:
        kappas = [r["kappa"] for r in rows]
        finite = [k for k in kappas if math.isfinite(k)]
        summary["kappa_mean"] = sum(finite) / len(finite) if finite else math.inf
        summary["kappa_max"] = max(kappas)
        # product of per-layer spectral norms: an upper bound on the Lipschitz constant for 1-Lipschitz
        # activations (for convs, the reshaped-matrix norm stands in for the operator norm)
        summary["lipschitz_bound"] = math.exp(sum(math.log(r["sigma_max"]) for r in rows)) if all(
            r["sigma_max"] > 0 for r in rows) else 0.0
    return summary
