"""The thin adapter through which `compressor.training.Trainer` runs a pruner: every Trainer hook is one call
of the pruner's loop-agnostic API (prepare / start_phase / epoch_begin / loss_term / step / epoch_metrics) or hands
it the optimizer the Trainer built; no pruning logic lives here or in the Trainer."""

from __future__ import annotations

from typing import Any

import torch

from compressor.training import Callback

from .base import Phase, Pruner
from .scores import ScoreSource, split_source


def trainer_source(trainer) -> ScoreSource:
    """Score data from a Trainer: PGD-CE batches of its training split with its attack settings and ranks."""
    cfg = trainer.config
    return split_source(trainer.data.train, eps=cfg.eps, alpha=cfg.step_size, steps=cfg.steps, norm=cfg.norm,
                        batch_size=cfg.batch_size, ctx=trainer.ctx)


class PrunerCallback(Callback):
    """Runs `pruner` in `phase` inside one Trainer (one Trainer per phase, as `prune_model` does)."""

    def __init__(self, pruner: Pruner, phase: Phase):
        self.pruner, self.phase = pruner, phase

    def on_train_begin(self, trainer) -> None:
        self.pruner.prepare(trainer.model, steps_per_epoch=len(trainer.loader), score_data=trainer_source(trainer),
                            seed=trainer.config.seed)  # the Trainer builds its optimizer after this hook
        self.pruner.start_phase(self.phase)

    def param_groups(self, trainer) -> list[dict] | None:
        return self.pruner.param_groups()

    def on_optimizer(self, trainer, optimizer: torch.optim.Optimizer) -> None:
        self.pruner.optimizer = optimizer

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self.pruner.epoch_begin(epoch)

    def extra_loss(self, trainer, x, y):
        return self.pruner.loss_term()

    def on_step_end(self, trainer) -> None:
        self.pruner.step()

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        metrics.update(self.pruner.epoch_metrics())

    def state_dict(self) -> dict[str, Any]:
        return self.pruner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruner.load_state_dict(state)
