"""Fast batched white-box attacks: FGSM and PGD (L-inf and L2) with restarts and several losses, and the
registered `FGSM`, `PGD` and `CW` attacks that run them.

No per-sample Python loops and no host synchronisation inside the iterations; the result always
lies inside the eps-ball around ``x`` and inside [0, 1]. The model's train/eval mode is left as the
caller set it (evaluation puts it in eval mode; training may craft in either mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CompressorError
from ..registry import ATTACKS
from ..settings import with_options
from .base import Attack
from .losses import LOSSES

NORMS = ("linf", "l2")
INITS = ("uniform", "normal", "zero")


@dataclass(frozen=True)
class AttackBudget:
    """Where and how hard PGD searches: the `norm` ball of radius `eps`, `steps` steps of size `alpha`, `restarts`."""

    eps: float
    alpha: float | None = None  # default 2.5 * eps / steps (2/255 at 8/255 and 10 steps)
    steps: int = 10
    norm: str = "linf"
    restarts: int = 1

    @property
    def step_size(self) -> float:
        """`alpha`, or its default 2.5 * eps / steps."""
        return 2.5 * self.eps / self.steps if self.alpha is None else self.alpha


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project `delta` onto the eps-ball and so that ``x + delta`` lies in [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _per_sample_norm(delta)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0) - x


def random_init(x: torch.Tensor, eps: float, norm: str, init: str,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A starting perturbation: uniform in the ball, small Gaussian (TRADES: 0.001 * N(0, 1)), or zero."""
    if init == "zero":
        delta = torch.zeros_like(x)
    elif init == "normal":
        delta = 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    elif norm == "linf":
        delta = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    else:  # uniform in the L2 ball: random direction, radius eps * u^(1/d)
        d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        u = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=generator, device=x.device, dtype=x.dtype)
        delta = d / _per_sample_norm(d) * eps * u.pow(1.0 / x[0].numel())
    return project(delta, x, eps, norm)


def _check(eps: float, norm: str, loss: str, init: str) -> None:
    if not eps >= 0:
        raise CompressorError(f"eps must be >= 0, got {eps}")
    if norm not in NORMS:
        raise CompressorError(f"unknown norm '{norm}': choose one of {', '.join(NORMS)}")
    if loss not in LOSSES:
        raise CompressorError(f"unknown attack loss '{loss}': choose one of {', '.join(LOSSES)}")
    if init not in INITS:
        raise CompressorError(f"unknown start '{init}': choose one of {', '.join(INITS)}")


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: AttackBudget | None = None, *,
        loss: str = "ce", init: str = "uniform", ref_logits: torch.Tensor | None = None,
        generator: torch.Generator | None = None, **budget_options: Any) -> torch.Tensor:
    """Projected gradient ascent on `loss`; over restarts keeps, per sample, a misclassified or highest-loss point.

    The `budget` may also be given as its fields (``eps=``, ``alpha=``, ``steps=``, ``norm=``, ``restarts=``),
    which override those of a given `budget`. ``ref_logits`` are the clean logits for the KL loss (computed here
    when omitted).
    """
    (budget,) = with_options("pgd", budget_options, AttackBudget if budget is None else budget)
    eps, steps, norm, restarts = budget.eps, budget.steps, budget.norm, budget.restarts
    _check(eps, norm, loss, init)
    x = x.detach()
    if eps == 0 or steps <= 0:
        return x.clone()
    alpha = budget.step_size
    loss_fn = LOSSES[loss]
    if loss == "kl" and ref_logits is None:
        with torch.no_grad():
            ref_logits = model(x)
    best_x = x.clone()
    best_key = torch.full((x.shape[0],), float("-inf"), device=x.device)
    for _ in range(max(1, restarts)):
        delta = random_init(x, eps, norm, init, generator)
        for _ in range(steps):
            delta.requires_grad_(True)
            obj = loss_fn(model(x + delta), y, ref_logits).sum()
            (grad,) = torch.autograd.grad(obj, delta)
            with torch.no_grad():
                if norm == "linf":
                    step = alpha * grad.sign()
                else:
                    step = alpha * grad / _per_sample_norm(grad)
                delta = project(delta.detach() + step, x, eps, norm)
        if restarts <= 1:
            return (x + delta).detach()
        with torch.no_grad():
            logits = model(x + delta)
            # rank candidates: a misclassified point beats any correct one, then the higher loss wins
            key = loss_fn(logits, y, ref_logits).float() + 1e6 * (logits.argmax(1) != y).float()
            better = key > best_key
            best_key = torch.where(better, key, best_key)
            best_x = torch.where(better.view(-1, *([1] * (x.ndim - 1))), x + delta, best_x)
    return best_x.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
         loss: str = "ce") -> torch.Tensor:
    """Fast gradient (sign) method: one step of size eps from x."""
    return pgd(model, x, y, AttackBudget(eps, alpha=eps, steps=1, norm=norm), loss=loss, init="zero")


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (one step of size eps, no random start)."""

    name = "fgsm"
    suffix_option = None

    def __init__(self, eps: float, norm: str = "linf", loss: str = "ce"):
        super().__init__(eps, norm, loss=loss)

    def __call__(self, model, x, y):
        return fgsm(model, x, y, eps=self.eps, norm=self.norm, loss=self.options["loss"])


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected gradient descent with random start; ``pgdN`` runs N steps, ``pgdNxR`` adds R restarts."""

    name = "pgd"
    default_loss = "ce"
    default_steps = 20

    def __init__(self, eps: float, norm: str = "linf", steps: int | None = None, restarts: int = 1,
                 alpha: float | None = None, loss: str | None = None):
        steps = self.default_steps if steps is None else steps
        if steps < 1 or restarts < 1:
            raise CompressorError(f"{self.name} needs steps >= 1 and restarts >= 1, got {steps} and {restarts}")
        alpha = 2.5 * eps / steps if alpha is None else alpha
        super().__init__(eps, norm, steps=steps, restarts=restarts, alpha=alpha, loss=loss or self.default_loss)

    def __call__(self, model, x, y):
        o = self.options
        budget = AttackBudget(self.eps, alpha=o["alpha"], steps=o["steps"], norm=self.norm, restarts=o["restarts"])
        return pgd(model, x, y, budget, loss=o["loss"])


@ATTACKS.register("cw")
class CW(PGD):
    """PGD on the Carlini-Wagner margin loss (L-inf, 30 steps by default; ``cwN`` for N steps)."""

    name = "cw"
    default_loss = "cw"
    default_steps = 30
