"""TSCNC (Lipschitz Constant Meets Condition Number, arXiv 2503.20454): adversarial Taylor importance
|w * dCE(f(x_adv), y)/dw| on PGD examples for the masks, and lambda * L_CC added to the TRADES loss in both phases.

L_CC has two readings (``lcc``), both consistent with the paper's summary: ``layer``, sum_l log(tau + ||W_l ⊙
M_l||_F^2) as written (a scale-invariant weight decay; tau is negligible beside ||W_l||^2), and ``weight``, the
log-sum sparsity penalty sum over the kept weights of log(tau + w^2), computed as log(1 + w^2 / tau) (the same
gradient 2w / (tau + w^2); shifted by log tau per weight so the logged loss stays readable), where tau sets the scale
below which a weight is pushed to zero. Which one a result used is in its config. The cumulative relative shrink the
term caused is logged per layer (`lcc_shrink`): the sum over steps of lr_t * lambda * ||dL_CC/dW_l||_F / ||W_l||_F,
accumulated on the device and read once per epoch (momentum amplifies the actual shrink by up to 1 / (1 - momentum)).

The paper's mask *updates* (it warns that the first-order estimate fails "when weight changes are substantial between
iterations") are the prune phase's schedule: every update recomputes the adversarial Taylor score on the current
weights and on fresh PGD examples, at the schedule's sparsity. By default the masks move at epoch boundaries
(``schedule`` iterative, ``rounds`` 2); ``update_every`` U moves them every U optimiser steps, the iterative or
cubic schedule following the step progress, the last update reaching the target.

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
LCC_READINGS = ("layer", "weight")


def log_frobenius(weights: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """L_CC = sum_l log(tau + ||W_l||_F^2) (pass the masked weights W ⊙ M), in float32."""
    return torch.stack([torch.log(tau + w.float().pow(2).sum()) for w in weights]).sum()


def log_sum(weights: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """The per-weight L_CC: sum over all weights of log(1 + w^2 / tau) = log(tau + w^2) - log tau (pass W ⊙ M:
    pruned weights add 0), in float32."""
    return torch.stack([torch.log1p(w.float().pow(2) / tau).sum() for w in weights]).sum()


def lcc_term(weights: Sequence[torch.Tensor], tau: float, reading: str = "layer") -> torch.Tensor:
    """L_CC in its `reading`: layer (`log_frobenius`) or weight (`log_sum`)."""
    return log_frobenius(weights, tau) if reading == "layer" else log_sum(weights, tau)


@torch.no_grad()
def lcc_relative_grad(weights: Sequence[torch.Tensor], tau: float, reading: str = "layer") -> torch.Tensor:
    """Per layer ||dL_CC/dW_l||_F / ||W_l||_F, analytically and on the device: 2 / (tau + ||W_l||^2) for the layer
    reading, ||2w / (tau + w^2)||_F / ||W_l||_F for the weight reading (0 for an all-zero layer)."""
    out = []
    for w in weights:
        w = w.detach().float()
        fro2 = w.pow(2).sum()
        if reading == "layer":
            out.append(2 / (tau + fro2))
        else:
            grad2 = (2 * w / (tau + w * w)).pow(2).sum()
            out.append(torch.where(fro2 > 0, (grad2 / fro2.clamp_min(torch.finfo(torch.float32).tiny)).sqrt(),
                                   torch.zeros_like(fro2)))
    return torch.stack(out)


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
    tau: float = option(1e-4, "tau inside L_CC's log(tau + ...).")
    lcc: str = option("layer", "reading of L_CC: layer, sum_l log(tau + ||W_l ⊙ M_l||_F^2) as the paper writes it; "
                               "weight, sum over the kept weights of log(tau + w^2) (the log-sum sparsity penalty).",
                      choices=LCC_READINGS)
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
        if self.lcc not in LCC_READINGS:
            raise CompressorError(f"unknown `lcc` '{self.lcc}': choose layer or weight", field="lcc")
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

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.shrink: torch.Tensor | None = None  # per layer: sum over steps of lr * lambda * ||dL_CC/dW|| / ||W||
        self._pending: float | None = None  # lr * lambda of the step whose loss took L_CC, until it is taken

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
            terms.append(lam * lcc_term(self.layers.effective(), c.tau, c.lcc))
            if self.optimizer is not None:  # the lr this step is taken with (the scheduler moves it after the step)
                self._pending = self.optimizer.param_groups[0]["lr"] * lam
        if c.logdet:
            terms.append(c.logdet * support_logdet(self.layers.effective(), self.layers.masks, c.logdet_nu,
                                                   c.logdet_form))
        return torch.stack(terms).sum() if terms else None

    def after_step(self) -> None:
        super().after_step()
        if self._pending is not None:  # L_CC was in this step's loss: add its relative step, on the device
            step = self._pending * lcc_relative_grad(self.layers.effective(), self.config.tau, self.config.lcc)
            self.shrink = step if self.shrink is None else self.shrink.to(step) + step  # resumed: moved once
            self._pending = None

    def lcc_shrink(self) -> dict[str, float]:
        """Per layer, the cumulative relative shrink L_CC caused so far (0 when it never took a step)."""
        values = self.shrink.tolist() if self.shrink is not None else [0.0] * len(self.layers.labels)
        return dict(zip(self.layers.labels, values))

    def epoch_metrics(self):
        return {**super().epoch_metrics(), "lcc_shrink": self.lcc_shrink()}

    def summary(self):
        return {**super().summary(), "lcc_shrink": self.lcc_shrink()}

    def state_dict(self):
        state = super().state_dict()
        if self.shrink is not None:
            state["lcc_shrink"] = self.shrink.cpu()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.shrink = state.get("lcc_shrink")
