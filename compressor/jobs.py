"""Typed jobs: frozen values that a command or the Python API builds once and checks once (in the constructor),
and that checking, locking, provenance and running then take whole, instead of relaying a dozen keywords.

The library functions keep their keyword forms: ``train(arch, dataset, output, config, force=True)`` builds the
same `TrainJob` as ``train(TrainJob(...))``; `compressor.settings.assemble` sorts such flat keywords into a job's parts by field name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from .attacks import Attack, build_attack
from .budget import MAX_CLASSES
from .data import DataBundle, dataset_files, load_dataset
from .errors import CompressorError
from .io import check_output
from .parsing import check_eps_range, check_seed
from .training import Callback, TrainConfig
from .training.engine import CHANNELS_LAST_MODES


@dataclass(frozen=True)
class ModelSource:
    """A model file and how to open it (`open_model`)."""

    path: Path | None = None  # None: options parsed before the file they apply to is known (a command's flags)
    arch: str | None = None  # builds a plain state dict: zoo name, ``tv:``/``timm:`` name, or ``module:callable``
    arch_kwargs: dict[str, Any] | None = None  # keyword arguments of `arch`
    num_classes: int | None = None  # classes of `arch` (default: the dataset's)
    mean: Sequence[float] | None = None  # input normalisation the weights expect (never taken from the dataset)
    std: Sequence[float] | None = None
    no_normalize: bool = False  # the weights take raw [0, 1] pixels
    trust_pickle: bool = False  # allow a pickled nn.Module (runs code from the file)
    trust_code: bool = False  # let a checkpoint naming an import path import it without `arch`
    trust_program: bool = False  # allow a .pt2 program or AOTInductor package

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))
        if self.num_classes is not None and self.num_classes < 1:
            raise CompressorError(f"`num_classes` must be at least 1, got {self.num_classes}")
        if self.num_classes is not None and self.num_classes > MAX_CLASSES:
            raise CompressorError(f"`num_classes` {self.num_classes:,} is more than the {MAX_CLASSES:,} classes "
                                  "compressor builds a classifier for: give the dataset's class count")

    def at(self, path: str | Path) -> ModelSource:
        """These options for the file `path`."""
        return dataclasses.replace(self, path=Path(path))

    def options(self) -> dict[str, Any]:
        """The opening options (every field but `path`), as keyword arguments of `open_model`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}


@dataclass(frozen=True)
class DataSource:
    """A dataset by name (or ``npz:PATH``) and where it lives."""

    dataset: str | None = None  # None: the one the checkpoint records
    data_root: str | Path | None = None  # folder holding it in its usual on-disk format
    download: bool = False  # allow downloading it
    val_size: float | int | None = None  # validation split carved from train (default: the dataset's)

    def files(self) -> list[Path]:
        """The files the dataset reads directly, which no output may overwrite."""
        return dataset_files(self.dataset)

    def load(self, seed: int = 0, name: str | None = None) -> DataBundle:
        """The dataset (`name` instead of `dataset` when given, e.g. the one a checkpoint records)."""
        return load_dataset(name or self.dataset, self.data_root, download=self.download, val_size=self.val_size,
                            seed=seed)


@dataclass(frozen=True)
class RunOptions:
    """Where a job writes and how it treats what is there."""

    output: Path | None = None  # the file to write (a pruning job chooses one beside its input when None)
    force: bool = False  # overwrite an existing output, start afresh over an interrupted run
    resume: bool = False  # continue an interrupted run from its per-epoch state
    keep_state: bool = False  # keep the per-epoch state after success
    quiet: bool = False  # no progress output
    command: str | None = None  # recorded in the checkpoint's provenance (the CLI passes its command line)

    def __post_init__(self) -> None:
        if self.output is not None and not isinstance(self.output, Path):
            object.__setattr__(self, "output", Path(self.output))

    def check_resumable(self, states: Sequence[Path], missing: str) -> None:
        """With `resume`, some state must be there to resume from (else `missing`, one line)."""
        if self.resume and not any(s.is_file() for s in states):
            raise CompressorError(missing)

    def check_interrupted(self, states: Sequence[Path]) -> None:
        """Without `resume` or `force`, an interrupted run's state is not silently thrown away."""
        left = [s for s in states if s.is_file()]
        if not self.resume and not self.force and left:
            raise CompressorError(f"{left[0]} holds an interrupted run: pass `resume` to continue it, or `force` to "
                                  "start afresh")


@dataclass(frozen=True)
class EvalOptions:
    """How `evaluate_model` measures: the threat model, the samples, and where adversarial examples go."""

    eps: float | None = None  # the budget (default: the dataset's)
    norm: str = "linf"  # linf or l2
    n: int | None = None  # the first n images of the split (default: all)
    batch_size: int = 256
    split: str = "test"  # test, val, train or all (every image of the dataset file)
    seed: int = 0
    device: str = "auto"
    channels_last: str = "auto"  # attack on channels_last weights: on, off or auto (on with CUDA); fp32 either way
    save_adv: str | Path | None = None  # .npz for the adversarial examples (`compressor.evaluation.ADV_KEYS_HELP`)
    force: bool = False  # overwrite an existing `save_adv`
    inputs: tuple[str | Path, ...] = ()  # files `save_adv` must not be (the model, the dataset's own file)

    def __post_init__(self) -> None:
        if self.eps is not None:
            check_eps_range(self.eps, self.norm)
        check_seed(self.seed)
        if self.batch_size < 1:
            raise CompressorError(f"`batch_size` must be >= 1, got {self.batch_size}")
        if self.n is not None and self.n < 1:
            raise CompressorError(f"`n` must be >= 1, got {self.n}: leave it out to evaluate the whole split")
        if self.channels_last not in CHANNELS_LAST_MODES:
            raise CompressorError(f"`channels_last` must be on, off or auto, got '{self.channels_last}'")
        if self.save_adv is not None:
            check_output(self.save_adv, self.force, self.inputs)

    def budget(self, data: DataBundle) -> float:
        """`eps`, or the dataset's default budget."""
        return data.info.default_eps if self.eps is None else self.eps

    def attacks(self, specs: Sequence[str | Attack], data: DataBundle) -> list[Attack]:
        """The attacks of `specs` (names such as ``pgd20`` are built at this budget; built ones are kept), each once."""
        eps = self.budget(data)
        built = (build_attack(s, eps, self.norm, seed=self.seed) if isinstance(s, str) else s for s in specs)
        return list({a.name: a for a in built}.values())


@dataclass(frozen=True)
class TrainJob:
    """One `compressor train` run: `arch` trained on `data` with `config`, written to ``run.output``."""

    PARTS: ClassVar[dict[str, type]] = {"data": DataSource, "run": RunOptions}

    arch: str  # a zoo name, ``tv:``/``timm:`` name, or ``module:callable``
    config: TrainConfig
    data: DataSource = field(default_factory=DataSource)
    run: RunOptions = field(default_factory=RunOptions)
    arch_kwargs: dict[str, Any] | None = None  # keyword arguments of `arch` (beside the dataset's classes, channels)
    callbacks: Sequence[Callback] = ()  # extra training callbacks

    def __post_init__(self) -> None:
        if self.data.dataset is None:
            raise CompressorError("no `dataset` to train on: name one, e.g. digits (see `compressor list datasets`)")
        if self.run.output is None:
            raise CompressorError("no `output` to write the trained checkpoint to: give a path ending in .pt")
        self.config.validate()

    @property
    def state(self) -> Path:
        """Where the per-epoch training state of this run lives."""
        return state_path_for(self.run.output)


def state_path_for(output: str | Path) -> Path:
    """Where the per-epoch training state of a run writing `output` lives."""
    output = Path(output)
    return output.with_name(output.name + ".state")
