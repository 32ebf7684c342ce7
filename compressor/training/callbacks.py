"""The small interface through which pruners hook into training without copying the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .engine import Trainer


class Callback:
    """Override what you need; every hook is optional. Hooks run on every rank."""

    def on_train_begin(self, trainer: "Trainer") -> None:
        """Before the optimiser is built: add parameters (e.g. scores) or wrap layers here."""

    def param_groups(self, trainer: "Trainer") -> list[dict] | None:
        """Optimiser parameter groups to use instead of all model parameters (None: no opinion)."""
        return None

    def on_optimizer(self, trainer: "Trainer", optimizer: torch.optim.Optimizer) -> None:
        """The optimiser was just built (by `Trainer.start`, before a saved state is loaded into it, or by a later
        `build_optimizer`): keep it here rather than reading `trainer.optimizer` every epoch."""

    def on_epoch_begin(self, trainer: "Trainer", epoch: int) -> None:
        """Start of an epoch: switch phases, freeze or unfreeze parameters (``requires_grad``)."""

    def extra_loss(self, trainer: "Trainer", x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """A term added to the training loss of this step (e.g. a regulariser)."""
        return None

    def on_after_backward(self, trainer: "Trainer") -> None:
        """After backward, before the optimiser step: edit gradients (e.g. zero masked entries)."""

    def on_step_end(self, trainer: "Trainer") -> None:
        """After the optimiser step: update or re-apply masks."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, Any]) -> None:
        """After validation; may add entries to `metrics` (they are logged and saved in the history)."""

    def on_train_end(self, trainer: "Trainer") -> None:
        """After the last epoch, before the best weights are restored."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in the per-epoch training state (for ``--resume``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class StopTraining(Exception):
    """Raised by a callback to stop cleanly after the current epoch's state is saved."""
