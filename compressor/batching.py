"""Running a model over many images in chunks that fit a fixed batch range."""

from __future__ import annotations

from typing import Callable

import torch


def run_in_range(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``fn`` on `x` in chunks of at most `hi` images; a short last chunk is padded up to `lo` (padding dropped)."""
    outs = []
    for i in range(0, len(x), hi):
        chunk = x[i:i + hi]
        n = len(chunk)
        if n < lo:
            chunk = torch.cat([chunk, chunk[-1:].expand(lo - n, *chunk.shape[1:])])
        outs.append(fn(chunk)[:n])
    return torch.cat(outs) if outs else torch.empty(0)
