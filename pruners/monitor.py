"""Condition numbers while training: per-layer kappa, sigma_max, sigma_min, Frobenius norm and sparsity, the
product-of-spectral-norms Lipschitz bound, added to every epoch's metrics (computed by compressor.analysis)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from compressor.analysis import model_summary
from compressor.training import Callback

LAYER_KEYS = ("kappa", "kappa_support", "rank", "sigma_max", "sigma_min", "frobenius", "sparsity")


def condition_summary(model: nn.Module) -> dict[str, Any]:
    """Global sparsity, kappa mean (finite layers) / max, singular layers, kappa on the support (mean / max),
    the Lipschitz bound and per-layer statistics."""
    s = model_summary(model, with_svd=True)
    support = [r["kappa_support"] for r in s["layers"]]
    return {"sparsity": s["global_sparsity"], "kappa_mean": s.get("kappa_mean"), "kappa_max": s.get("kappa_max"),
            "singular_layers": sum(not math.isfinite(r["kappa"]) for r in s["layers"]),
            "kappa_support_mean": sum(support) / len(support) if support else math.nan,
            "kappa_support_max": max(support, default=math.nan), "lipschitz_bound": s.get("lipschitz_bound"),
            "layers": {r["layer"]: {k: r[k] for k in LAYER_KEYS} for r in s["layers"]}}


class ConditionTracker(Callback):
    """Adds `condition_summary` of the (masked) model to the metrics at the end of every epoch."""

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        metrics.update(condition_summary(trainer.model))
