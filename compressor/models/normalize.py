"""Input normalisation as the first module of every model, so models take [0, 1] pixels."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import CompressorError


class Normalize(nn.Module):
    """Per-channel (x - mean) / std; mean and std are buffers so they travel with the state dict."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise CompressorError(f"the normalisation mean {list(mean)} and std {list(std)} need one value per channel "
                                  "each: give `mean` and `std` of the same length")
        if not all(s > 0 and s != float("inf") for s in std) or not all(abs(m) != float("inf") and m == m for m in mean):
            raise CompressorError(f"the normalisation std {list(std)} must be positive and finite (and the mean "
                                  f"{list(mean)} finite): dividing by it would give inf/NaN inputs")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def normalization_of(model: nn.Module) -> dict[str, list[float]] | None:
    """Mean and std of the first `Normalize` inside `model`, or None when it has none."""
    for module in model.modules():
        if isinstance(module, Normalize):
            return {"mean": [round(v, 6) for v in module.mean.flatten().tolist()],
                    "std": [round(v, 6) for v in module.std.flatten().tolist()]}
    return None
