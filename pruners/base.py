"""The pruner interface: a loop-agnostic object with a typed config, in the spirit of `torch.ao.pruning`
(prepare / step / squash_mask) and Torch-Pruning (regularize / step). It needs no particular trainer:

    pruner = make_pruner("tscnc", sparsity=0.9)
    pruner.prepare(model, optimizer=opt, score_data=loader, score_loss=adversarial_ce(eps=8 / 255))
    for phase in pruner.plan(epochs_prune=10, epochs_finetune=10):
        pruner.start_phase(phase)               # HYDRA: scores on, weights frozen / scores -> hard masks
        for epoch in range(phase.epochs):
            pruner.epoch_begin(epoch)           # masks move when the schedule says
            for x, y in loader:
                loss = my_loss(model, x, y) + pruner.regularizer()   # TSCNC's L_CC, ADMM's rho term
                opt.zero_grad(); loss.backward(); opt.step()
                pruner.step()                   # pruned weights stay zero; ADMM / HYDRA per-step updates;
                                                # masks move every `update_every` steps when set
            log = pruner.epoch_metrics()        # what the pruner did so far (mask updates, L_CC's shrink...)
    report = pruner.squash_mask()               # masks folded into plain weights

A pruner combines four separate parts: a *score source* (what is important: `scores`), the *allocation*
(how many weights each layer keeps: `Allocator`), the *pattern* (unstructured or N:M) and the *schedule*
(when the masks reach the target). `compressor.training.Trainer` drives the same methods through the thin
`pruners.callback.PrunerCallback` adapter; nothing here knows that trainer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from compressor.errors import CompressorError
from compressor.registry import TRANSFORMS

from .allocation import Allocator
from .config import PrunerConfig
from .masking import MaskedLayers, finalize
from .schedules import Schedule
from .scores import Batches, LossFn, ScoreSource
from .transforms.base import split_spec

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


class Pruner:
    """Base pruner: masks from `scores()` at the scheduled sparsity; subclasses change the score source,
    add a loss term (`penalty`) or change what a phase, an epoch or a step does."""

    name: ClassVar[str] = "pruner"
    Config: ClassVar[type[PrunerConfig]] = PrunerConfig
    default_adv: ClassVar[str] = "trades"
    default_lr: ClassVar[tuple[float, float]] = (0.01, 0.01)  # prune phase, fine-tune phase
    default_weight_decay: ClassVar[float] = 5e-4  # the Trainer's default; methods whose reference differs override
    default_transforms: ClassVar[tuple[str, ...]] = ()  # --transform specs `prune` adds when not given (presets)
    needs_prune_phase: ClassVar[bool] = False  # HYDRA and ADMM do their search in the prune phase
    masks_move_while_pruning: ClassVar[bool] = False  # select the last epoch, not the best, of the prune phase

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
        self._allocation: tuple[tuple, Allocator] | None = None  # ((labels, shapes), its Allocator): see `_allocate`
        self.phase = Phase("finetune", 0, 0.0)
        self.at_target = False  # the masks have the final sparsity
        self.optimizer: torch.optim.Optimizer | None = None  # its momentum is zeroed where masks remove weights
        self.steps_per_epoch: int | None = None
        self.source: ScoreSource | None = None
        self.seed = 0
        self.phase_step = 0  # optimiser steps taken in the current phase
        self.mask_log: list[dict[str, Any]] = []  # the prune phase's mask updates: step and sparsity target

    # ----------------------------------------------------------------- set-up
    @classmethod
    def transform_specs(cls, given: Sequence[str]) -> list[str]:
        """The --transform specs `given` plus this method's `default_transforms` missing from them, in stage order."""
        names = {split_spec(s)[0] for s in given}
        added = [s for s in cls.default_transforms if split_spec(s)[0] not in names]
        if not added:
            return list(given)
        return sorted([*given, *added], key=lambda s: TRANSFORMS.get(split_spec(s)[0]).stage)

    def check(self, model: nn.Module) -> Allocator:
        """Validate the config against `model` without changing it (no prunable layers, unmatched globs)."""
        return self._allocate(MaskedLayers(model))

    def _allocate(self, layers: MaskedLayers) -> Allocator:
        """The Allocator for `layers`, built once: `check` then `attach` on the same layers share it."""
        key = (tuple(layers.labels), tuple(layers.shapes))
        if self._allocation is None or self._allocation[0] != key:
            self._allocation = (key, Allocator(layers.labels, layers.shapes, self.config.allocation,
                                               self.config.layer_sparsity, self.config.nm))
        return self._allocation[1]

    def attach(self, model: nn.Module) -> None:
        """Put masks (all ones) on `model`'s prunable layers; repeated calls for the same model do nothing."""
        if self.layers is not None and self.layers.model is model:
            return
        layers = MaskedLayers(model)
        self.allocator = self._allocate(layers)
        layers.install()
        self.layers = layers

    def prepare(self, model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None,
                steps_per_epoch: int | None = None, score_data: Batches | ScoreSource | None = None,
                score_loss: LossFn | None = None, seed: int = 0) -> "Pruner":
        """Attach masks to `model` and say what the pruner may use; call again to change any of it.

        `optimizer`: its momentum is zeroed where masks remove weights, and HYDRA adds its scores to it for
        the prune phase (an optimizer built on `model.parameters()` before or after this call both work).
        `steps_per_epoch`: ADMM's Z/U updates and `update_every`'s schedule are counted in steps.
        `score_data` (an iterable of (x, y) batches, re-iterated at every mask update, e.g. a DataLoader; or a
        function seed -> such an iterable) and `score_loss` (loss_fn(model, x, y), e.g. `adversarial_ce(eps)`): what data-driven
        scores (TSCNC's Taylor importance) differentiate. `seed`: score initialisation and sampling.
        """
        self.attach(model)
        if isinstance(score_data, ScoreSource):
            self.source = score_data
        elif score_data is not None or score_loss is not None:
            if score_data is None or score_loss is None:
                raise CompressorError("give score_data and score_loss together (batches of (x, y) and "
                                      "loss_fn(model, x, y), e.g. pruners.adversarial_ce(eps=8/255))")
            self.source = ScoreSource(score_data, score_loss)
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        return self

    def plan(self, epochs_prune: int, epochs_finetune: int, lr: float | None = None,
             lr_finetune: float | None = None) -> list[Phase]:
        """The phases of a job with these epoch counts (an epoch count of 0 drops that phase)."""
        for name, value in (("lr", lr), ("lr_finetune", lr_finetune)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise CompressorError(f"`{name}` must be a finite number > 0, got {value}", field=name)
        if epochs_prune < 0 or epochs_finetune < 0 or epochs_prune + epochs_finetune < 1:
            raise CompressorError(f"`epochs_prune` {epochs_prune} and `epochs_finetune` {epochs_finetune}: both must "
                                  "be >= 0 and together at least 1")
        if self.config.schedule != "oneshot" or self.needs_prune_phase:
            if epochs_prune < 1:
                why = f"`schedule` {self.config.schedule}" if self.config.schedule != "oneshot" else self.name
                raise CompressorError(f"{why} needs a prune phase: pass `epochs_prune` 1 or more")
            if not self.config.update_every:  # with it, the rounds are checked against the steps in `start_phase`
                self.schedule.check(epochs_prune)
        phases = []
        if epochs_prune:
            moving = self.config.schedule != "oneshot" or self.masks_move_while_pruning
            phases.append(Phase("prune", epochs_prune, self.default_lr[0] if lr is None else lr,
                                "last" if moving else None))
        if epochs_finetune:
            lr_ft = self.default_lr[1] if lr_finetune is None else lr_finetune
            phases.append(Phase("finetune", epochs_finetune, lr_ft))
        return phases

    def start_phase(self, phase: Phase) -> None:
        """Enter `phase` (after `prepare`): its step count starts at 0; subclasses set up what it trains."""
        self._require_prepared("start_phase")
        self.phase = phase
        self.phase_step = 0
        if self.stepwise:
            if not self.steps_per_epoch:
                raise CompressorError("`update_every` counts steps: pass steps_per_epoch= (e.g. len(loader)) to "
                                      "prepare()")
            self.schedule.check(phase.epochs, Schedule.points(*self.schedule_units()))

    def param_groups(self) -> list[dict] | None:
        """What the optimiser should train in this phase (None: every parameter of the model)."""
        return None

    @property
    def pruning(self) -> bool:
        return self.phase.name == "prune"

    @property
    def stepwise(self) -> bool:
        """Whether the prune phase's schedule counts steps (`update_every` > 0) rather than epochs."""
        return self.pruning and self.config.update_every > 0

    def schedule_units(self) -> tuple[int, int]:
        """(length, span) of the prune phase's schedule: (epochs, 1), or (steps, `update_every`) when stepwise."""
        if self.stepwise:
            return self.phase.epochs * self.steps_per_epoch, self.config.update_every
        return self.phase.epochs, 1

    def ramp(self, pos: int) -> Ramp:
        """Final sparsity -> the sparsity at point `pos` (an epoch, or a step when stepwise) of the current phase."""
        return self.schedule.ramp(pos, *self.schedule_units()) if self.pruning else _identity

    def _require_prepared(self, what: str) -> None:
        if self.layers is None:
            raise CompressorError(f"pruner.{what}() before pruner.prepare(model): prepare the model first")

    # ----------------------------------------------------------------- the loop
    def epoch_begin(self, epoch: int) -> None:
        """Start of `epoch` (0-based, within the phase): the masks move when the schedule says."""
        if self.pruning:
            if not self.stepwise:
                self.schedule_point(epoch)
            else:  # the step points move the masks in `step`; a later epoch (or a resume) only restores its point
                every = self.config.update_every
                self.schedule_point(self.phase_step // every * every, move=self.phase_step == 0)
        elif not self.at_target:
            self.update_masks()

    def schedule_point(self, pos: int, move: bool = True) -> None:
        """Point `pos` of the prune phase's schedule (an epoch, or a step when stepwise): the masks move to its
        target when the schedule says (`move` False: a point already reached, e.g. before a resume)."""
        length, span = self.schedule_units()
        if move and self.schedule.updates_at(pos, length, span):
            t = self.schedule.fraction(pos, length, span)
            ramp = self.schedule.ramp_to(t)
            self.update_masks(ramp, t >= 1.0)
            self.mask_log.append({"step": self.phase_step, "sparsity": ramp(self.config.sparsity)})

    def penalty(self) -> torch.Tensor | None:
        """The method's own loss term for this step (None: none); subclasses override."""
        return None

    def loss_term(self) -> torch.Tensor | None:
        """Everything this pruner adds to the training loss this step (None: nothing): the method's penalty.
        ARLST's h(A) is not a pruner's: the separable-linear transform adds it (`ConditionRegularizer`)."""
        return self.penalty()

    def regularizer(self) -> torch.Tensor:
        """The term to add to your loss this step (a zero tensor when the method adds none)."""
        term = self.loss_term()
        return term if term is not None else torch.zeros((), device=self.layers.masks[0].device)

    def step(self) -> None:
        """Call after every `optimizer.step()`."""
        self.phase_step += 1
        self.after_step()
        if self.stepwise and self.phase_step % self.config.update_every == 0 \
                and self.phase_step < self.schedule_units()[0]:
            self.schedule_point(self.phase_step)

    def after_step(self) -> None:
        """Per-step work after the optimiser step: by default, keep the stored pruned weights at zero."""
        if self.hard:
            self.layers.zero_masked_()

    @property
    def hard(self) -> bool:
        """Whether the masks are fixed within a step, so stored weights under them are kept at zero."""
        return True

    # ----------------------------------------------------------------- masks
    def scores(self) -> list[torch.Tensor]:
        """Importance of every weight of every layer (higher = keep)."""
        raise NotImplementedError

    def compute_masks(self, scores: list[torch.Tensor], ramp: Ramp = _identity) -> list[torch.Tensor]:
        """Masks from scores through the allocation and pattern at the ramped target."""
        return self.allocator.masks(scores, self.config.sparsity, ramp)

    def update_masks(self, ramp: Ramp = _identity, final: bool = True) -> None:
        """Recompute the masks from `scores` and zero what they remove (weights and momentum)."""
        masks = self.compute_masks(self.scores(), ramp)
        self.layers.set_masks(masks, self.optimizer)
        self.at_target = final

    def require_source(self) -> ScoreSource:
        """The score data; a one-line error when `prepare` was given none."""
        if self.source is None:
            raise CompressorError(f"pruner {self.name} scores weights on data: pass score_data= (batches of (x, y)) "
                                  "and score_loss= (e.g. pruners.adversarial_ce(eps=8/255)) to prepare()")
        return self.source

    # ----------------------------------------------------------------- state (resume)
    def state_dict(self) -> dict[str, Any]:
        return {"at_target": self.at_target, "phase_step": self.phase_step, "mask_log": list(self.mask_log)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.at_target = bool(state.get("at_target", False))
        self.phase_step = int(state.get("phase_step", 0))
        self.mask_log = list(state.get("mask_log", []))

    # ----------------------------------------------------------------- logs
    def epoch_metrics(self) -> dict[str, Any]:
        """What the pruner did so far, for the epoch's metrics (one host synchronisation at most)."""
        return {"mask_updates": len(self.mask_log)}

    def summary(self) -> dict[str, Any]:
        """What the pruner's schedule did over the job, for the report: the prune phase's mask updates (step and
        sparsity target) and the steps per epoch they were counted in."""
        return {"steps_per_epoch": self.steps_per_epoch, "mask_updates": list(self.mask_log)}

    # ----------------------------------------------------------------- the end
    def final_masks(self) -> list[torch.Tensor] | None:
        """Masks to apply before folding when the last phase left them short of the target (None: keep)."""
        return None if self.at_target else self.compute_masks(self.scores())

    def squash_mask(self) -> dict[str, Any]:
        """Apply the final masks, fold them into plain weights and return what was done, per layer."""
        self._require_prepared("squash_mask")
        masks = self.final_masks()
        if masks is not None:
            self.layers.set_masks(masks)
            self.at_target = True
        targets = self.allocator.targets(self.config.sparsity)
        counts = self.layers.counts()
        layers = [{"layer": n, "shape": list(s), "params": total, "kept": kept, "sparsity": 1 - kept / total,
                   "sparsity_target": t, "pattern": f"{p.nm[0]}:{p.nm[1]}" if p.nm else "unstructured"}
                  for n, s, (kept, total), t, p in zip(self.layers.labels, self.layers.shapes, counts, targets,
                                                        self.allocator.plans)]
        kept, total = sum(k for k, _ in counts), sum(t for _, t in counts)
        summary = self.summary()
        finalize(self.layers.model)
        self.layers = None
        return {"layers": layers, "pattern_skipped": list(self.allocator.skipped), "sparsity": 1 - kept / total,
                "summary": summary}
