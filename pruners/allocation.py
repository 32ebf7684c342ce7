"""Allocation: how many weights each layer keeps (uniform per layer, one global threshold, or per-layer globs),
and the boolean masks that keep exactly that many of the highest scores, within the layer's pattern."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .config import match_rules
from .patterns import nm_applies, restrict


def keep_count(numel: int, sparsity: float) -> int:
    """Weights kept when removing `sparsity` of `numel` (rounded to the nearest weight)."""
    return numel - int(math.floor(sparsity * numel + 0.5))


def top_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """A boolean mask of exactly `keep` highest entries of `scores` (ties broken by position)."""
    flat = scores.reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep > 0:
        mask[flat.topk(keep, sorted=False).indices] = True
    return mask.view(scores.shape)


@dataclass(frozen=True)
class LayerPlan:
    """One prunable layer's allocation: a fixed sparsity from a rule (or None: the allocation decides)."""

    name: str
    shape: tuple[int, ...]
    rule: float | None
    nm: tuple[int, int] | None  # the pattern this layer carries (None: unstructured or skipped)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def floor(self) -> float:
        """The least sparsity the layer's pattern imposes."""
        return 1 - self.nm[0] / self.nm[1] if self.nm else 0.0


class Allocator:
    """Turns per-layer scores into masks at a given target sparsity, honouring rules and the pattern."""

    def __init__(self, names: Sequence[str], shapes: Sequence[Sequence[int]], mode: str = "layer",
                 rules: dict[str, float] | None = None, nm: tuple[int, int] | None = None):
        per_layer = match_rules(list(names), rules or {})
        self.mode = mode
        self.skipped: list[str] = []  # layers whose input size does not allow the N:M pattern
        plans = []
        for name, shape in zip(names, shapes):
            rule = per_layer.get(name)
            layer_nm = nm
            if nm is not None and (rule == 0 or not nm_applies(tuple(shape), nm[1])):
                if rule != 0:
                    self.skipped.append(name)
                layer_nm = None
            plans.append(LayerPlan(name, tuple(shape), rule, layer_nm))
        self.plans = plans

    def targets(self, sparsity: float, ramp: Callable[[float], float] = lambda s: s) -> list[float | None]:
        """Per-layer sparsity now (None: decided by the global threshold); `ramp` maps final to current."""
        out: list[float | None] = []
        for p in self.plans:
            if p.rule is not None:
                out.append(max(ramp(p.rule), p.floor) if p.rule > 0 else 0.0)
            elif self.mode == "global":
                out.append(None)
            else:
                out.append(max(ramp(sparsity), p.floor))
        return out

    def masks(self, scores: Sequence[torch.Tensor], sparsity: float,
              ramp: Callable[[float], float] = lambda s: s) -> list[torch.Tensor]:
        """Boolean masks keeping the highest scores: per layer, or over the global pool at `ramp(sparsity)`."""
        targets = self.targets(sparsity, ramp)
        restricted = [restrict(s.detach().float(), p.nm) for s, p in zip(scores, self.plans)]
        masks: list[torch.Tensor | None] = [None] * len(self.plans)
        pool = [i for i, t in enumerate(targets) if t is None]
        for i, t in enumerate(targets):
            if t is not None:
                masks[i] = top_mask(restricted[i], keep_count(self.plans[i].numel, t))
        if pool:
            flat = torch.cat([restricted[i].reshape(-1) for i in pool])
            keep = keep_count(flat.numel(), max(ramp(sparsity), 0.0))
            allowed = sum(self.plans[i].numel * (1 - self.plans[i].floor) for i in pool)
            keep = min(keep, int(round(allowed)))  # never pick what the pattern forbids
            chosen = top_mask(flat, keep)
            start = 0
            for i in pool:
                n = self.plans[i].numel
                masks[i] = chosen[start:start + n].view(self.plans[i].shape)
                start += n
        return masks  # type: ignore[return-value]
