"""Score sources: how important each weight is (higher = keep). Learned HYDRA scores and the ADMM
projection live with their pruners; these are the ones computed from the model (and data)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compressor.attacks import pgd
from compressor.data import ArraySplit, BatchLoader
from compressor.training.distributed import DistContext, all_reduce_sum

from .masking import MaskedLayers


def magnitude_scores(layers: MaskedLayers) -> list[torch.Tensor]:
    """|W ⊙ M|: the largest magnitudes are kept (masked weights score 0 and stay pruned)."""
    return [w.detach().abs() for w in layers.effective()]


def random_scores(layers: MaskedLayers, seed: int) -> list[torch.Tensor]:
    """Uniform random scores from a fixed seed (identical on every rank); masked weights stay pruned."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(m.shape, generator=gen).to(m.device) * m for m in layers.masks]


def taylor_scores(model: nn.Module, layers: MaskedLayers, split: ArraySplit, *, eps: float, alpha: float,
                  steps: int, norm: str = "linf", samples: int = 512, batch_size: int = 128, squared: bool = False,
                  seed: int = 0, ctx: DistContext | None = None) -> list[torch.Tensor]:
    """Adversarial first-order Taylor importance, summed over batches of PGD examples (eval mode).

    Per batch, |w * dCE(f(x_adv), y)/dw| (or its square) for the effective weight w = W ⊙ M; the gradient
    with respect to the stored weight equals the effective one wherever the mask keeps the weight, and
    w is 0 elsewhere. Over DDP ranks the sums are added, so every rank gets the same scores.
    """
    ctx = ctx or DistContext(device=layers.masks[0].device)
    loader = BatchLoader(split, batch_size, shuffle=True, seed=seed, rank=ctx.rank, world_size=ctx.world_size,
                         device=ctx.device)
    stored = layers.stored
    acc = [torch.zeros_like(w, dtype=torch.float32) for w in stored]
    budget = max(1, -(-samples // ctx.world_size))
    was_training = model.training
    model.eval()
    try:
        seen = 0
        for x, y in loader:
            x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, loss="ce", init="uniform")
            loss = F.cross_entropy(model(x_adv).float(), y)
            grads = torch.autograd.grad(loss, stored, allow_unused=True)
            with torch.no_grad():
                for a, w, m, g in zip(acc, stored, layers.masks, grads):
                    if g is not None:
                        t = (w * m).float() * g.float()
                        a.add_(t * t if squared else t.abs())
            seen += len(y)
            if seen >= budget:
                break
    finally:
        model.train(was_training)
    return [all_reduce_sum(a, ctx) for a in acc]

