"""Magnitude pruning (LWM): keep the largest |W|, per layer or globally, then adversarial fine-tuning."""

from __future__ import annotations

from . import register_pruner
from .base import Pruner
from .scores import magnitude_scores


@register_pruner()
class MagnitudePruner(Pruner):
    """Magnitude (LWM): keep the largest |W| per layer or globally; one-shot, iterative or cubic."""

    name = "magnitude"

    def scores(self):
        return magnitude_scores(self.layers)
