"""Schedules: the sparsity the masks have at each epoch of the prune phase (they reach the target by its end)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from compressor.errors import CompressorError


@dataclass(frozen=True)
class Schedule:
    """oneshot: the target from the first epoch; iterative: geometric rounds; cubic: Zhu & Gupta every epoch."""

    kind: str = "oneshot"
    rounds: int = 3

    def check(self, epochs: int) -> None:
        """Reject a schedule that does not fit the prune phase."""
        if self.kind == "iterative" and self.rounds > epochs:
            raise CompressorError(f"`schedule` iterative with `rounds` {self.rounds} needs `epochs_prune` >= "
                                  f"{self.rounds}, got {epochs}: lower `rounds` or add prune epochs")
        if self.kind == "cubic" and epochs < 1:
            raise CompressorError("`schedule` cubic needs `epochs_prune` >= 1")

    def fraction(self, epoch: int, epochs: int) -> float:
        """Progress in (0, 1] of the prune phase at `epoch` (0-based): 1 means the target is reached."""
        if self.kind == "oneshot" or epochs <= 0:
            return 1.0
        if self.kind == "iterative":
            return (epoch * self.rounds // epochs + 1) / self.rounds
        return (epoch + 1) / epochs

    def ramp(self, epoch: int, epochs: int) -> Callable[[float], float]:
        """Map a final sparsity to the sparsity at `epoch` of a prune phase of `epochs` epochs."""
        t = self.fraction(epoch, epochs)
        if t >= 1.0:
            return lambda s: s
        if self.kind == "iterative":  # every round removes the same fraction of what is left
            return lambda s: 1 - (1 - s) ** t
        return lambda s: s * (1 - (1 - t) ** 3)  # Zhu & Gupta with s_i = 0

    def updates_at(self, epoch: int, epochs: int) -> bool:
        """Whether the masks change at the start of `epoch`."""
        if epoch == 0:
            return True
        return self.kind != "oneshot" and self.fraction(epoch, epochs) != self.fraction(epoch - 1, epochs)
