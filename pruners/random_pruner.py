"""Random pruning: the sanity baseline every real score source must beat."""

from __future__ import annotations

from . import register_pruner
from .base import Pruner
from .scores import random_scores


@register_pruner("random")
class RandomPruner(Pruner):
    """Random masks (sanity baseline), seeded by the training seed and step."""

    name = "random"

    def scores(self, trainer):
        seed, step = (trainer.config.seed, trainer.global_step) if trainer is not None else (0, 0)
        return random_scores(self.layers, seed * 1009 + step)
