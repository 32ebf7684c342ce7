"""Training objectives: standard, PGD-AT (Madry) and TRADES."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd


def trades_kl(logits_nat: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(f(x) || f(x')) summed over the batch and divided by the batch size, as in TRADES."""
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits_nat.float(), dim=1),
                    reduction="sum") / logits_nat.shape[0]


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """CE(f(x), y) + beta * KL(f(x) || f(x')) / B."""
    return F.cross_entropy(logits_nat.float(), y) + beta * trades_kl(logits_nat, logits_adv)


def craft_pgd_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int,
                 norm: str = "linf") -> torch.Tensor:
    """PGD-AT's training examples: PGD on CE from a uniform random start."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, loss="ce", init="uniform")


def craft_trades(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int,
                 norm: str = "linf") -> torch.Tensor:
    """TRADES' training examples: signed steps on KL(f(x) || f(x')) from x + 0.001 * N(0, 1)."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, loss="kl", init="normal")
