"""TSCNC (Lipschitz Constant Meets Condition Number, arXiv 2503.20454): adversarial Taylor importance
|w * dCE(f(x_adv), y)/dw| on PGD examples for the masks, and lambda * sum_l log(tau + ||W_l ⊙ M_l||_F^2)
added to the TRADES loss in both phases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from compressor.errors import CompressorError

from . import register_pruner
from .base import Pruner
from .config import PrunerConfig, option, redefault
from .scores import taylor_importance

TAYLOR = ("abs", "squared")


def log_frobenius(weights: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """L_CC = sum_l log(tau + ||W_l||_F^2) (pass the masked weights W ⊙ M), in float32."""
    return torch.stack([torch.log(tau + w.float().pow(2).sum()) for w in weights]).sum()


@dataclass
class TSCNCConfig(PrunerConfig):
    """TSCNC's settings on top of the shared ones; allocation and schedule defaults measured on digits
    (benchmarks/results/robust_pruning-digits-*-tscnc-ablation*: global beat per-layer by 10-39 PGD points at
    90-95 %, two iterative rounds beat one-shot by 22 points at 99 % and lost 1.4 at 90 %)."""

    allocation: str = redefault(PrunerConfig, "allocation", "global")
    schedule: str = redefault(PrunerConfig, "schedule", "iterative")
    lam: float = option(1e-3, "weight lambda of the log-Frobenius (condition-number) term.", cli="lambda")
    tau: float = option(1e-4, "tau inside log(tau + ||W ⊙ M||_F^2).")
    taylor: str = option("abs", "Taylor score per batch, abs |w*g| or squared (w*g)^2.", choices=TAYLOR)
    score_samples: int = option(512, "PGD examples the Taylor importance is summed over at each mask update.")

    def validate(self) -> None:
        super().validate()
        if not self.lam >= 0 or not self.tau > 0:
            raise CompressorError(f"--lambda must be >= 0 and --tau > 0, got {self.lam} and {self.tau}")
        if self.taylor not in TAYLOR:
            raise CompressorError(f"unknown --taylor '{self.taylor}': choose abs or squared")
        if self.score_samples < 1:
            raise CompressorError(f"--score-samples must be at least 1, got {self.score_samples}")


@register_pruner("tscnc")
class TSCNCPruner(Pruner):
    """TSCNC: adversarial Taylor importance + log-Frobenius condition-number term, inside TRADES."""

    name = "tscnc"
    Config = TSCNCConfig
    config: TSCNCConfig

    def scores(self):
        c = self.config
        return taylor_importance(self.layers.model, self.layers, self.require_source(), samples=c.score_samples,
                                 squared=c.taylor == "squared", seed=self.seed + self.phase_step)

    def penalty(self):
        if self.config.lam == 0:
            return None
        return self.config.lam * log_frobenius(self.layers.effective(), self.config.tau)
