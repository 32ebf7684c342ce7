"""What runs an engine: the `Runner` interface, PyTorch as a runner, and chunked runs within a batch range."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from compressor.batching import run_in_range
from compressor.folding import prepare_model


class Runner(Protocol):
    """What the benchmark needs from an engine."""

    kind: str
    providers: list[str]
    batch_range: tuple[int, int | None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def check_batch(self, batch: int) -> None: ...

    def close(self) -> None: ...


class TorchRunner:
    """A PyTorch model in eval mode (fp32, no grad) as a runner; any batch size."""

    kind = "pytorch"
    batch_range: tuple[int, int | None] = (1, None)

    def __init__(self, model: nn.Module, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = prepare_model(model).to(self.device)
        self.providers = [f"pytorch-{self.device.type}"]

    def check_batch(self, batch: int) -> None:
        """Any batch size runs."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x.to(self.device, torch.float32)).float().cpu()

    def close(self) -> None:
        """Drop the model."""
        self.model = None


def run_many(runner: Runner, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of `x` through `runner`, in chunks of at most `batch_size` that fit its batch range."""
    lo, hi = runner.batch_range
    return run_in_range(runner, x, lo, min(hi, batch_size) if hi is not None else batch_size)
