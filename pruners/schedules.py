"""Schedules: the sparsity the masks have at each point of the prune phase (they reach the target by its end).

A point is an epoch (the default: masks move at epoch boundaries) or, under ``update_every`` U, a step of the
phase (masks move every U steps); `span` is the distance between points (1 epoch, or U steps) and `length` the
phase's length in the same unit, so one formula covers both: with U = steps per epoch the step schedule is the
epoch schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from compressor.errors import CompressorError


@dataclass(frozen=True)
class Schedule:
    """oneshot: the target from the first point; iterative: geometric rounds; cubic: Zhu & Gupta at every point."""

    kind: str = "oneshot"
    rounds: int = 3

    def check(self, epochs: int, points: int | None = None) -> None:
        """Reject a schedule that does not fit the prune phase (`points`: update points under `update_every`)."""
        if self.kind == "iterative" and points is not None and self.rounds > points:
            raise CompressorError(f"`schedule` iterative with `rounds` {self.rounds} needs as many mask updates, but "
                                  f"`update_every` leaves {points} in the prune phase: lower `rounds` or "
                                  "`update_every`")
        if self.kind == "iterative" and points is None and self.rounds > epochs:
            raise CompressorError(f"`schedule` iterative with `rounds` {self.rounds} needs `epochs_prune` >= "
                                  f"{self.rounds}, got {epochs}: lower `rounds`, add prune epochs, or set "
                                  "`update_every`")
        if self.kind == "cubic" and epochs < 1:
            raise CompressorError("`schedule` cubic needs `epochs_prune` >= 1")

    def fraction(self, pos: int, length: int, span: int = 1) -> float:
        """Progress in (0, 1] of the prune phase at point `pos` (0-based; points `span` apart in a phase of `length`):
        1 means the target is reached. Iterative rounds start where the progress passes r / rounds; cubic takes the
        progress at the end of the interval the point opens."""
        if self.kind == "oneshot" or length <= 0 or pos + span >= length:  # the last point reaches the target
            return 1.0
        if self.kind == "iterative":
            return (pos * self.rounds // length + 1) / self.rounds
        return min(1.0, (pos + span) / length)

    def ramp(self, pos: int, length: int, span: int = 1) -> Callable[[float], float]:
        """Map a final sparsity to the sparsity at point `pos` of a prune phase of `length` (see `fraction`)."""
        return self.ramp_to(self.fraction(pos, length, span))

    def ramp_to(self, t: float) -> Callable[[float], float]:
        """Map a final sparsity to the sparsity at progress `t` in (0, 1]."""
        if t >= 1.0:
            return lambda s: s
        if self.kind == "iterative":  # every round removes the same fraction of what is left
            return lambda s: 1 - (1 - s) ** t
        return lambda s: s * (1 - (1 - t) ** 3)  # Zhu & Gupta with s_i = 0

    def updates_at(self, pos: int, length: int, span: int = 1) -> bool:
        """Whether the masks change at point `pos`."""
        if pos == 0:
            return True
        return self.kind != "oneshot" and self.fraction(pos, length, span) != self.fraction(pos - span, length, span)

    @staticmethod
    def points(length: int, span: int) -> int:
        """How many points `span` apart a phase of `length` has (the first at 0)."""
        return max(1, math.ceil(length / span))
