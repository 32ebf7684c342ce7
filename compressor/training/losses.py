"""Training objectives: standard, PGD-AT (Madry) and TRADES."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd


def trades_kl(logits_nat: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(f(x) || f(x')) summed over the batch and divided by the batch size, as in TRADES.

    The target is given as log-probabilities (``log_target``): the same value and gradient as the reference's
    ``kl_div(log_softmax(adv), softmax(nat))``, without its NaN. There the gradient reaches the clean logits through
    xlogy(p, p), whose derivative log(p) + 1 is -inf where p underflows to 0 in float32 (a logit gap above ~104),
    and 0 * -inf is NaN. Measured on the akamaster ResNet-20 (standard training) under HYDRA's prune phase: the
    largest logit went 19 -> 38 -> 47 -> 75 in three steps, and the fourth backward returned NaN from
    XlogyBackward0 (torch.autograd anomaly mode), which then reached every score and BatchNorm parameter.
    """
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.log_softmax(logits_nat.float(), dim=1),
                    reduction="sum", log_target=True) / logits_nat.shape[0]


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
