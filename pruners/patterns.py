"""Sparsity patterns: unstructured, or N:M along the input dimension (the layout sparse tensor cores accept).

N:M means at most N nonzeros in every group of M consecutive weights along the input dimension: for a
Linear weight (out, in) the groups run along ``in``; for a convolution (out, in, *kernel) along the input
channels, for each output channel and kernel position.
"""

from __future__ import annotations

import torch


def _groups_last(t: torch.Tensor) -> torch.Tensor:
    """Move the input dimension (dim 1) last: (out, *kernel, in)."""
    return t if t.ndim == 2 else t.movedim(1, -1)


def _groups_back(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t if ndim == 2 else t.movedim(-1, 1)


def nm_applies(shape: torch.Size | tuple[int, ...], m: int) -> bool:
    """Whether a weight of `shape` can carry an N:M pattern (its input size is divisible by M)."""
    return len(shape) >= 2 and shape[1] % m == 0


def nm_eligible(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean map of the N highest scores in every group of M along the input dimension."""
    g = _groups_last(scores)
    groups = g.reshape(-1, m)
    idx = groups.topk(n, dim=1).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, idx, True)
    return _groups_back(keep.reshape(g.shape), scores.ndim)


def is_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of M consecutive weights along the input dimension has at most N nonzeros."""
    if not nm_applies(mask.shape, m):
        return False
    groups = (_groups_last(mask) != 0).reshape(-1, m)
    return bool((groups.sum(1) <= n).all())


def restrict(scores: torch.Tensor, nm: tuple[int, int] | None) -> torch.Tensor:
    """Scores with everything the pattern forbids set to -inf (unchanged when unstructured)."""
    if nm is None:
        return scores
    return scores.masked_fill(~nm_eligible(scores, *nm), float("-inf"))
