"""Score sources: how important each weight is (higher = keep). Learned HYDRA scores and the ADMM
projection live with their pruners; these are the ones computed from the model (and data).

Data-driven scores take their data explicitly, so they work in any training loop: a `ScoreSource`
holds the batches (an iterable such as a DataLoader, or a function of a seed returning one) and the
loss whose gradient defines the importance (e.g. `adversarial_ce`: CE on PGD examples, TSCNC's choice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Union

import torch
import torch.nn.functional as F
from torch import nn

from compressor.attacks import AttackBudget, pgd
from compressor.data import ArraySplit, BatchLoader
from compressor.errors import CompressorError
from compressor.settings import with_options
from compressor.training.distributed import DistContext, all_reduce_sum

from .masking import MaskedLayers

Batch = tuple[torch.Tensor, torch.Tensor]
Batches = Union[Iterable[Batch], Callable[[int], Iterable[Batch]]]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def adversarial_ce(eps: float, steps: int = 10, alpha: float | None = None, norm: str = "linf") -> LossFn:
    """loss_fn(model, x, y) = CE(f(x_adv), y), x_adv from PGD-`steps` (uniform start; alpha default 2.5 eps/steps)."""
    step = 2.5 * eps / steps if alpha is None else alpha

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = pgd(model, x, y, eps=eps, alpha=step, steps=steps, norm=norm, loss="ce", init="uniform")
        return F.cross_entropy(model(x_adv).float(), y)

    return loss


@dataclass
class ScoreSource:
    """The data a data-driven score reads: batches, the loss to differentiate, and (under DDP) how to sum ranks."""

    batches: Batches  # iterable of (x, y), re-iterated at every mask update; or seed -> iterable
    loss: LossFn
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. an all-reduce over DDP ranks
    world_size: int = 1  # ranks sharing the sample budget

    def iterate(self, seed: int) -> Iterable[Batch]:
        """The batches for one scoring pass (a callable source gets `seed`)."""
        return self.batches(seed) if callable(self.batches) else self.batches


def magnitude_scores(layers: MaskedLayers) -> list[torch.Tensor]:
    """|W ⊙ M|: the largest magnitudes are kept (masked weights score 0 and stay pruned)."""
    return [w.detach().abs() for w in layers.effective()]


def random_scores(layers: MaskedLayers, seed: int) -> list[torch.Tensor]:
    """Uniform random scores from a fixed seed (identical on every rank); masked weights stay pruned."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(m.shape, generator=gen).to(m.device) * m for m in layers.masks]


def taylor_importance(model: nn.Module, layers: MaskedLayers, source: ScoreSource, *, samples: int = 512,
                      squared: bool = False, seed: int = 0) -> list[torch.Tensor]:
    """First-order Taylor importance |w * dL/dw| (or its square) of the effective weights w = W ⊙ M, summed
    over the source's batches until `samples` examples were seen, with the model in eval mode.

    The gradient with respect to the stored weight equals the effective one wherever the mask keeps the
    weight, and w is 0 elsewhere. With `source.reduce` the per-rank sums are added across ranks.
    """
    stored = layers.stored
    acc = [torch.zeros_like(w, dtype=torch.float32) for w in stored]
    budget = max(1, -(-samples // source.world_size))
    was_training = model.training
    model.eval()
    try:
        seen = 0
        for x, y in source.iterate(seed):
            loss = source.loss(model, x, y)
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
    if seen == 0:
        raise CompressorError("the score data gave no batches: pass a non-empty score_data (e.g. the train loader)")
    return [source.reduce(a) for a in acc] if source.reduce is not None else acc


def split_source(split: ArraySplit, *, eps: float, alpha: float, steps: int, norm: str = "linf",
                 batch_size: int = 128, ctx: DistContext | None = None) -> ScoreSource:
    """Adversarial-CE batches of a data split, shuffled per seed and sharded over DDP ranks."""
    ctx = ctx or DistContext()

    def batches(seed: int) -> BatchLoader:
        return BatchLoader(split, batch_size, shuffle=True, seed=seed, rank=ctx.rank, world_size=ctx.world_size,
                           device=ctx.device)

    return ScoreSource(batches, adversarial_ce(eps, steps, alpha, norm), lambda t: all_reduce_sum(t, ctx),
                       ctx.world_size)


def taylor_scores(model: nn.Module, layers: MaskedLayers, split: ArraySplit, budget: AttackBudget | None = None, *,
                  samples: int = 512, batch_size: int = 128, squared: bool = False, seed: int = 0,
                  ctx: DistContext | None = None, **budget_options: Any) -> list[torch.Tensor]:
    """Adversarial Taylor importance |w * dCE(f(x_adv), y)/dw| over PGD examples of `split` (`taylor_importance`).

    The PGD `budget` may also be given as its fields (``eps=``, ``alpha=``, ``steps=``, ``norm=``); one start per
    batch, so its `restarts` stays 1.
    """
    (budget,) = with_options("taylor_scores", budget_options, AttackBudget if budget is None else budget)
    if budget.restarts != 1:
        raise CompressorError(f"taylor scores run one PGD start per batch, not {budget.restarts}: leave `restarts` "
                              "at 1")
    ctx = ctx or DistContext(device=layers.masks[0].device)
    source = split_source(split, eps=budget.eps, alpha=budget.step_size, steps=budget.steps, norm=budget.norm,
                          batch_size=batch_size, ctx=ctx)
    return taylor_importance(model, layers, source, samples=samples, squared=squared, seed=seed)
