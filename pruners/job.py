"""`PruneJob`: one pruning run as a frozen value, built and checked once; the defaults a job leaves open (the
sparsity, the transforms a preset or a size target adds, the training config) are decided here and nowhere else."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Mapping, Sequence

from compressor.attacks import build_attack
from compressor.errors import CompressorError
from compressor.jobs import DataSource, ModelSource, RunOptions
from compressor.registry import PRUNERS, RUNTIMES
from compressor.training import Callback, TrainConfig

from .base import Pruner
from .config import PrunerConfig, parse_pattern
from .targets import DEFAULT_BATCH_SIZES, check_target
from .transforms import parse_transforms
from .transforms.base import Transform, split_spec
from .transforms.channels import NEEDS_RATIO, Channels

DEFAULT_SPARSITY = 0.9  # `compressor prune MODEL --method M` without --sparsity or an N:M --pattern


def decide_sparsity(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with their `sparsity` decided (the one place that does, for `make_pruner` and `PruneJob`): as
    given; else 1 - N/M of an N:M `pattern`; else 0 for `method` none; else left out (a job then takes
    `DEFAULT_SPARSITY`, and a pruner's config refuses it)."""
    if options.get("sparsity") is not None:
        return dict(options)
    nm = parse_pattern(options.get("pattern", "unstructured"))
    if nm is None and method != "none":
        return dict(options)
    return {**options, "sparsity": 1 - nm[0] / nm[1] if nm is not None else 0.0}


def make_pruner(method: str, **options: Any) -> Pruner:
    """The registered pruner `method` configured with `options` (unknown names are one-line errors)."""
    return PRUNERS.get(method)(**decide_sparsity(method, options))


def check_prunes(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Refuse a `sparsity` that prunes nothing (the job would only fine-tune); return `options`."""
    if method != "none" and options.get("sparsity") is not None and not options["sparsity"] > 0:
        raise CompressorError(f"`sparsity` {options['sparsity']} prunes nothing (it would only fine-tune): give a "
                              "target between 0 and 1, e.g. 0.9, or use `method` none with a `transforms`")
    return options


def train_config_for(method: str, **given: Any) -> TrainConfig:
    """A TrainConfig with `method`'s TRADES / PGD-AT and weight decay wherever `given` leaves them None."""
    cls = PRUNERS.get(method)
    defaults = {"adv": cls.default_adv, "weight_decay": cls.default_weight_decay}
    return TrainConfig(**{**given, **{k: v for k, v in defaults.items() if given.get(k) is None}})


@dataclass(frozen=True)
class PhasePlan:
    """The epochs and learning rates of a pruning job's two phases (None: the method's learning rate)."""

    epochs_prune: int = 10  # epochs of the prune phase (mask search)
    epochs_finetune: int = 10  # epochs of fine-tuning with fixed masks
    lr: float | None = None  # prune-phase learning rate
    lr_finetune: float | None = None  # fine-tune learning rate

    def settings(self) -> dict[str, Any]:
        """What a phase state records, so that resuming with other values is refused."""
        return {"epochs_prune": self.epochs_prune, "epochs_finetune": self.epochs_finetune, "lr_prune": self.lr,
                "lr_finetune": self.lr_finetune}


@dataclass(frozen=True)
class LoopOptions:
    """How `prune_model` runs its phases: per-epoch states, extra callbacks, condition tracking, output."""

    state_prefix: Any = None  # str | Path: each phase keeps its per-epoch state beside it, for `resume`
    resume: bool = False  # continue from those states
    callbacks: Sequence[Callback] = ()  # extra training callbacks
    track: bool = True  # record condition numbers every epoch
    ctx: Any = None  # the distributed context (`compressor.training.init_distributed`)
    quiet: bool = False  # no progress output
    console: Any = None  # a rich Console for the phase lines
    settings: Mapping[str, Any] | None = None  # recorded in each phase's state (e.g. the transforms, the source)


@dataclass(frozen=True)
class PruneEval:
    """How a pruning job measures its model before and after, and whether it plots."""

    eval_attack: str = "pgd20"  # attack for the before/after test accuracy
    eval_n: int | None = None  # test images for before/after (default: all)
    plots: bool = False  # write kappa plots (PNG) beside the output

    def __post_init__(self) -> None:
        build_attack(self.eval_attack, 1.0)  # a bad attack name fails before anything runs; built for real later
        if self.eval_n is not None and self.eval_n < 1:
            raise CompressorError(f"`eval_n` must be >= 1, got {self.eval_n}: leave it out to evaluate the whole "
                                  "test split")


@dataclass(frozen=True)
class SizeTarget:
    """A size or speed the `channels` transform's ratio is searched for (`pruners.targets`); none by default."""

    target_macs: float | None = None  # at most this fraction of the dense MACs
    target_speedup: float | None = None  # this many times faster, measured on `runtime` at `target_batch_sizes`
    runtime: str = "onnxruntime"  # a registered runtime (onnxruntime, pytorch)
    target_batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES

    def __post_init__(self) -> None:
        check_target(self.target_macs, self.target_speedup)
        if self.target_speedup is not None:
            RUNTIMES.get(self.runtime)  # an unknown runtime fails before anything runs

    @property
    def given(self) -> bool:
        """Whether a target is set."""
        return self.target_macs is not None or self.target_speedup is not None

    def settings(self) -> dict[str, Any] | None:
        """The target as the report and the phase states record it (None without one)."""
        if not self.given:
            return None
        return {"macs": self.target_macs, "speedup": self.target_speedup, "runtime": self.runtime,
                "batch_sizes": list(self.target_batch_sizes)}


@dataclass(frozen=True)
class PruneJob:
    """One `compressor prune` run: the model at ``model.path`` pruned with `method` and saved to ``run.output``.

    Built once and checked once: the constructor decides what was left open (`specs`: the transforms with a
    preset's and a size target's added; `pruner_options`: the sparsity decided by `decide_sparsity` with
    `DEFAULT_SPARSITY` when it leaves none, `sparsity_default` saying so; `train_config`: `config`, or the method's
    TRADES / PGD-AT and weight decay) and builds the pruner once to check its options and epoch counts."""

    PARTS: ClassVar[dict[str, type]] = {"model": ModelSource, "data": DataSource, "run": RunOptions,
                                        "phases": PhasePlan, "evaluation": PruneEval, "target": SizeTarget}

    method: str  # a registered pruner, or none (transforms alone)
    model: ModelSource
    options: Mapping[str, Any] | None = field(default_factory=dict)  # the pruner's config fields, as given
    transforms: Sequence[str] = ()  # transform specs (channels:0.5, nm:2:4, ...), applied before the pruner
    config: TrainConfig | None = None  # training in both phases (default: the method's adv and weight decay)
    data: DataSource = field(default_factory=DataSource)
    run: RunOptions = field(default_factory=RunOptions)
    phases: PhasePlan = field(default_factory=PhasePlan)
    evaluation: PruneEval = field(default_factory=PruneEval)
    target: SizeTarget = field(default_factory=SizeTarget)
    specs: tuple[str, ...] = field(init=False)
    chosen: tuple[Transform, ...] = field(init=False, compare=False, repr=False)
    pruner_options: dict[str, Any] = field(init=False)
    pruner_config: PrunerConfig = field(init=False)
    sparsity_default: bool = field(init=False)
    train_config: TrainConfig = field(init=False)

    def __post_init__(self) -> None:
        decided = self._decide()
        for name, value in decided.items():
            object.__setattr__(self, name, value)

    def _decide(self) -> dict[str, Any]:
        """The derived fields, checking every input on the way."""
        if self.model.path is None:
            raise TypeError("PruneJob needs the model file: `path`, or a ModelSource with its `path`")
        if self.model.path.suffix == ".pt2":  # refused unopened: loading a program can run code, and gains nothing
            raise CompressorError(f"{self.model.path} is a .pt2 program, whose graph cannot be pruned: prune the model "
                                  "it was exported from (its state dict with `arch`, or a pickled module with "
                                  "`trust_pickle`), then `compressor export` the result")
        cls = PRUNERS.get(self.method)
        specs = cls.transform_specs(self.transforms)  # a preset's transforms (arlst: separable-linear)
        targeted = self.target.given
        if targeted and not any(split_spec(s)[0] == "channels" for s in specs):
            specs = ["channels", *specs]  # the target chooses its ratio
        chosen = parse_transforms(specs)
        for t in chosen:
            if isinstance(t, Channels) and targeted and t.ratio is not None:
                raise CompressorError(f"`transforms` channels:{t.ratio:g} and a `target_macs` or `target_speedup` "
                                      "both set the ratio: drop the ratio (channels,importance=...) or the target")
            if isinstance(t, Channels) and not targeted and t.ratio is None:
                raise CompressorError(NEEDS_RATIO)
        options = dict(self.options or {})  # None: none given (the keyword form's old default)
        for t in chosen:
            options = t.pruner_options(self.method, options)
        if self.method == "none" and not chosen and options.get("pattern", "unstructured") == "unstructured":
            raise CompressorError("`method` none without `transforms` or `pattern` changes nothing: add e.g. "
                                  "`transforms` channels:0.5, or choose a pruner")
        decided = decide_sparsity(self.method, options)
        defaulted = decided.get("sparsity") is None
        if defaulted:
            decided["sparsity"] = DEFAULT_SPARSITY
        pruner = cls(**check_prunes(self.method, decided))
        config = self.config or train_config_for(self.method)
        config = replace(config, craft_mode=config.crafting)  # the mode used, for the provenance
        config.validate()
        p = self.phases
        pruner.plan(p.epochs_prune, p.epochs_finetune, p.lr, p.lr_finetune)  # epoch counts fit the method
        return {"specs": tuple(specs), "chosen": tuple(chosen), "pruner_options": decided,
                "pruner_config": pruner.config, "sparsity_default": defaulted, "train_config": config}

    def pruner(self) -> Pruner:
        """A fresh pruner of this job (its config checked when the job was built)."""
        return PRUNERS.get(self.method)(config=copy.deepcopy(self.pruner_config))

    def transforms_to_run(self) -> list[Transform]:
        """Fresh copies of the parsed transforms (a size target sets the channels ratio on them)."""
        return copy.deepcopy(list(self.chosen))
