"""Random pruning: the sanity baseline every real score source must beat."""

from __future__ import annotations

from . import register_pruner
from .base import Pruner
from .scores import random_scores


@register_pruner()
class RandomPruner(Pruner):
    """Random masks (sanity baseline), seeded by the seed given to `prepare` and the step in the phase."""

    name = "random"

    def scores(self):
        return random_scores(self.layers, self.seed * 1009 + self.phase_step)
