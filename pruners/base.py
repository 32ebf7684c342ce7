"""The pruner interface: a registered Callback with a typed config, run by the training engine in phases.

A pruner combines four separate parts: a *score source* (what is important: `scores`), the *allocation*
(how many weights each layer keeps: `Allocator`), the *pattern* (unstructured or N:M) and the *schedule*
(when the masks reach the target). Every pruner has a prune phase and a fine-tune phase, each one run of
`compressor.training.Trainer` with this object among its callbacks; the training loop is never copied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from compressor.errors import CompressorError
from compressor.training import Callback

from .allocation import Allocator
from .config import PrunerConfig
from .masking import MaskedLayers, finalize
from .schedules import Schedule

Ramp = Callable[[float], float]


def _identity(s: float) -> float:
    return s


@dataclass(frozen=True)
class Phase:
    """One training run of a pruning job: its name, epochs, learning rate and checkpoint selection."""

    name: str  # "prune" or "finetune"
    epochs: int
    lr: float
    select: str | None = None  # TrainConfig.select override: "last" while the masks still move


def build_config(cls: type[PrunerConfig], options: dict[str, Any], method: str = "") -> PrunerConfig:
    """Instantiate `cls` from keyword options; an unknown option is a one-line error naming the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise CompressorError(f"'{unknown[0]}' is not an option of pruner {method or cls.__name__}: it takes "
                              f"{', '.join(sorted(names))}")
    config = cls(**options)
    config.validate()
    return config


class Pruner(Callback):
    """Base pruner: masks from `scores()` at the scheduled sparsity; subclasses change the score source,
    add a loss term or replace phases' behaviour."""

    name: ClassVar[str] = "pruner"
    Config: ClassVar[type[PrunerConfig]] = PrunerConfig
    default_adv: ClassVar[str] = "trades"
    default_lr: ClassVar[tuple[float, float]] = (0.01, 0.01)  # prune phase, fine-tune phase

    def __init__(self, config: PrunerConfig | None = None, **options: Any):
        if config is None:
            config = build_config(self.Config, options, self.name)
        elif options:
            raise CompressorError("give a pruner either a config or keyword options, not both")
        else:
            config.validate()
        self.config = config
        self.schedule = Schedule(config.schedule, config.rounds)
        self.layers: MaskedLayers | None = None
        self.allocator: Allocator | None = None
        self.phase = Phase("finetune", 0, 0.0)
        self.at_target = False  # the masks have the final sparsity
        self.trainer = None

    # ----------------------------------------------------------------- set-up
    def check(self, model: nn.Module) -> Allocator:
        """Validate the config against `model` without changing it (no prunable layers, unmatched globs)."""
        layers = MaskedLayers(model)
        return Allocator(layers.names, layers.shapes, self.config.allocation, self.config.layer_sparsity,
                         self.config.nm)

    def attach(self, model: nn.Module) -> None:
        """Put masks (all ones) on `model`'s prunable layers; repeated calls for the same model do nothing."""
        if self.layers is not None and self.layers.model is model:
            return
        self.allocator = self.check(model)
        self.layers = MaskedLayers(model)
        self.layers.install()

    def plan(self, epochs_prune: int, epochs_finetune: int, lr: float | None = None,
             lr_finetune: float | None = None) -> list[Phase]:
        """The phases of a job with these epoch counts (an epoch count of 0 drops that phase)."""
        if epochs_prune < 0 or epochs_finetune < 0 or epochs_prune + epochs_finetune < 1:
            raise CompressorError(f"--epochs-prune {epochs_prune} and --epochs-finetune {epochs_finetune}: both must "
                                  "be >= 0 and together at least 1")
        if self.config.schedule != "oneshot" or self.needs_prune_phase:
            if epochs_prune < 1:
                why = f"--schedule {self.config.schedule}" if self.config.schedule != "oneshot" else self.name
                raise CompressorError(f"{why} needs a prune phase: pass --epochs-prune 1 or more")
            self.schedule.check(epochs_prune)
        phases = []
        if epochs_prune:
            moving = self.config.schedule != "oneshot" or self.masks_move_while_pruning
            phases.append(Phase("prune", epochs_prune, self.default_lr[0] if lr is None else lr,
                                "last" if moving else None))
        if epochs_finetune:
            phases.append(Phase("finetune", epochs_finetune, self.default_lr[1] if lr_finetune is None else lr_finetune))
        return phases

    needs_prune_phase: ClassVar[bool] = False  # HYDRA and ADMM do their search in the prune phase
    masks_move_while_pruning: ClassVar[bool] = False  # select the last epoch, not the best, of the prune phase

    def start_phase(self, phase: Phase) -> None:
        """Called before the phase's Trainer is built."""
        self.phase = phase

    @property
    def pruning(self) -> bool:
        return self.phase.name == "prune"

    def ramp(self, epoch: int) -> Ramp:
        """Final sparsity -> the sparsity at `epoch` of the current phase."""
        return self.schedule.ramp(epoch, self.phase.epochs) if self.pruning else _identity

    # ----------------------------------------------------------------- masks
    def scores(self, trainer) -> list[torch.Tensor]:
        """Importance of every weight of every layer (higher = keep)."""
        raise NotImplementedError

    def compute_masks(self, scores: list[torch.Tensor], ramp: Ramp = _identity) -> list[torch.Tensor]:
        """Masks from scores through the allocation and pattern at the ramped target."""
        return self.allocator.masks(scores, self.config.sparsity, ramp)

    def update_masks(self, trainer, ramp: Ramp = _identity, final: bool = True) -> None:
        """Recompute the masks from `scores` and zero what they remove (weights and momentum)."""
        masks = self.compute_masks(self.scores(trainer), ramp)
        self.layers.set_masks(masks, trainer.optimizer if trainer is not None else None)
        self.at_target = final

    @property
    def hard(self) -> bool:
        """Whether the masks are fixed within a step, so stored weights under them are kept at zero."""
        return True

    # ----------------------------------------------------------------- callback hooks
    def on_train_begin(self, trainer) -> None:
        self.trainer = trainer
        self.attach(trainer.model)

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        if self.pruning:
            if self.schedule.updates_at(epoch, self.phase.epochs):
                final = self.schedule.fraction(epoch, self.phase.epochs) >= 1.0
                self.update_masks(trainer, self.ramp(epoch), final)
        elif not self.at_target:
            self.update_masks(trainer)

    def on_step_end(self, trainer) -> None:
        if self.hard:
            self.layers.zero_masked_()

    def state_dict(self) -> dict[str, Any]:
        return {"at_target": self.at_target}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.at_target = bool(state.get("at_target", False))

    # ----------------------------------------------------------------- the end
    def final_masks(self) -> list[torch.Tensor] | None:
        """Masks to apply before folding when the last phase left them short of the target (None: keep)."""
        return None if self.at_target else self.compute_masks(self.scores(self.trainer))

    def finish(self, model: nn.Module) -> dict[str, Any]:
        """Apply the final masks, fold them into plain weights and return what was done, per layer."""
        masks = self.final_masks()
        if masks is not None:
            self.layers.set_masks(masks)
            self.at_target = True
        targets = self.allocator.targets(self.config.sparsity)
        counts = self.layers.counts()
        layers = [{"layer": n, "shape": list(s), "params": total, "kept": kept, "sparsity": 1 - kept / total,
                   "sparsity_target": t, "pattern": f"{p.nm[0]}:{p.nm[1]}" if p.nm else "unstructured"}
                  for n, s, (kept, total), t, p in zip(self.layers.names, self.layers.shapes, counts, targets,
                                                        self.allocator.plans)]
        finalize(model)
        self.layers = None
        return {"layers": layers, "pattern_skipped": list(self.allocator.skipped)}
