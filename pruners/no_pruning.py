"""`--method none`: no pruner, for transforms alone; every weight is kept unless an N:M pattern is asked for,
in which case the largest magnitudes within the pattern are kept (as the magnitude pruner would)."""

from __future__ import annotations

from dataclasses import dataclass

from compressor.errors import CompressorError

from . import register_pruner
from .config import PrunerConfig, parse_pattern
from .magnitude import MagnitudePruner


@dataclass
class NoPruningConfig(PrunerConfig):
    """The shared settings; the sparsity is 0, or 1 - N/M with an N:M pattern (nm transform or --pattern)."""

    def validate(self) -> None:
        nm = parse_pattern(self.pattern)
        if self.sparsity not in (None, 0, 1 - nm[0] / nm[1] if nm is not None else 0):
            raise CompressorError(f"`method` none removes no weights, but `sparsity` {self.sparsity} was given: "
                                  "drop `sparsity` or choose a pruner such as `method` magnitude")
        super().validate()


@register_pruner()
class NoPruning(MagnitudePruner):
    """No pruning (for transforms alone); with an N:M pattern, magnitude within the pattern."""

    name = "none"
    Config = NoPruningConfig
