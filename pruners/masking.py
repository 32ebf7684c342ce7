"""One masking mechanism for Conv1d/2d/3d and Linear: a W ⊙ M parametrization with a 0/1 mask buffer.

The forward always uses W ⊙ M, so masked weights are exactly zero whatever the optimiser does; the
pruners also zero the stored weights and their momentum, so nothing can come back. With learned scores
(HYDRA) the mask's gradient passes straight through to the scores. `finalize` folds every mask into a
plain weight: the model then has exactly the original architecture's parameters and buffers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.analysis import prunable_layers
from compressor.errors import CompressorError
from compressor.folding import forget_ddp_ignores, put_first
from compressor.models import user_name


class _ScoredMask(torch.autograd.Function):
    """W ⊙ M forward; backward: dW = g ⊙ M and, straight through the top-k, dS = sign(S) ⊙ W ⊙ g (HYDRA)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight, scores, mask)
        return weight * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, scores, mask = ctx.saved_tensors
        grad_w = grad * mask if ctx.needs_input_grad[0] else None
        grad_s = grad * weight * scores.sign() if ctx.needs_input_grad[1] else None
        return grad_w, grad_s, None


class WeightMask(nn.Module):
    """The parametrization W -> W ⊙ M; with `scores` set, M = TopK(|S|) passes its gradient to the scores."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight))  # 0/1 in the weight's dtype: no cast per forward
        self.register_parameter("scores", None)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.scores is None:
            return weight * self.mask
        return _ScoredMask.apply(weight, self.scores, self.mask)


def mask_of(module: nn.Module) -> WeightMask | None:
    """The WeightMask on `module`'s weight, if any."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    found = [p for p in module.parametrizations.weight if isinstance(p, WeightMask)]
    return found[0] if found else None


class MaskedLayers:
    """The masked layers of one model: their masks, stored weights, effective weights and optional scores."""

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None):
        layers = dict(prunable_layers(model))
        if not layers:
            raise CompressorError(f"the model ({type(model).__name__}) has no prunable layers (Conv1d/2d/3d or "
                                  "Linear): nothing to prune")
        self.names = list(names) if names is not None else list(layers)
        self.labels = [user_name(model, n) for n in self.names]  # as the user's model spells them: reports, globs
        self.modules = [layers[n] for n in self.names]
        self.shapes = [tuple(m.weight.shape) for m in self.modules]
        self.model = model

    def install(self) -> None:
        """Put a WeightMask (all ones) on every layer that has none; DDP is told to leave the masks alone."""
        for m in self.modules:
            if mask_of(m) is None:
                parametrize.register_parametrization(m, "weight", WeightMask(m.weight))
        ignore = [f"{n}.parametrizations.weight.0.mask" for n in self.names]
        prior = set(getattr(self.model, "_ddp_params_and_buffers_to_ignore", ()))
        # masks are identical on every rank by construction: broadcasting them each forward would be waste
        self.model._ddp_params_and_buffers_to_ignore = sorted(prior | set(ignore))

    @property
    def params(self) -> list[WeightMask]:
        return [mask_of(m) for m in self.modules]  # type: ignore[misc]

    @property
    def masks(self) -> list[torch.Tensor]:
        return [p.mask for p in self.params]

    @property
    def stored(self) -> list[nn.Parameter]:
        """The weights as stored (before the mask)."""
        return [m.parametrizations.weight.original for m in self.modules]

    def effective(self) -> list[torch.Tensor]:
        """W ⊙ M of every layer (differentiable)."""
        return [m.weight for m in self.modules]

    def set_masks(self, masks: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer | None = None,
                  zero_weights: bool = True) -> None:
        """Install new masks; by default also zero the stored weights and momentum they remove."""
        with torch.no_grad():
            for p, new in zip(self.params, masks):
                p.mask.copy_(new)
            if zero_weights:
                self.zero_masked_(optimizer)

    def zero_masked_(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero stored weights (and their optimiser momentum) under the masks; no host synchronisation."""
        with torch.no_grad():
            stored, masks = self.stored, self.masks
            torch._foreach_mul_(stored, masks)
            if optimizer is not None:
                for w, m in zip(stored, masks):
                    buf = optimizer.state.get(w, {}).get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(m)

    def set_scores(self, scores: Sequence[torch.Tensor] | None) -> None:
        """Attach learned scores (HYDRA) to every layer, or remove them with None."""
        for i, p in enumerate(self.params):
            p.scores = None if scores is None else nn.Parameter(scores[i].detach().clone())

    @property
    def scores(self) -> list[nn.Parameter]:
        return [p.scores for p in self.params if p.scores is not None]

    def counts(self) -> list[tuple[int, int]]:
        """(kept, total) per layer from the masks (one host synchronisation for all layers)."""
        kept = torch.stack([m.sum() for m in self.masks]).tolist()
        return [(int(k), m.numel()) for k, m in zip(kept, self.masks)]


def finalize(model: nn.Module) -> nn.Module:
    """Fold every mask into a plain weight and remove the parametrizations (and any scores); returns `model`."""
    for _, module in list(model.named_modules()):
        if mask_of(module) is not None:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            put_first(module, {"weight": module._parameters["weight"]})  # the same Parameter an optimiser holds
    return forget_ddp_ignores(model)


def is_masked(model: nn.Module) -> bool:
    """Whether any layer of `model` still carries a mask."""
    return any(mask_of(m) is not None for m in model.modules())
