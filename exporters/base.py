"""What every exporter shares: its result record, its declared needs, and model preparation for export."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import torch
from torch import nn

from compressor.budget import MAX_BATCH_SIZE
from compressor.errors import CompressorError

from .runners import Runner

T = TypeVar("T")

FP32_TOLERANCE = 1e-4  # max |delta logit| allowed between an fp32 export and PyTorch
# fp16 rounds every activation to 11 significant bits: allow 1 % of the largest logit (at least 1e-2)
FP16_RELATIVE_TOLERANCE = 1e-2


@dataclass
class ExportResult:
    """What an export wrote and how closely it matches the PyTorch model."""

    path: str
    format: str
    precision: str = "fp32"
    opset: int | None = None
    file_bytes: int = 0
    max_abs_diff: float | None = None  # parity: max |delta logit| against PyTorch (None: not checked)
    tolerance: float | None = None
    parity_inputs: str | None = None  # what parity ran on, e.g. "digits test[:64]" or "random"
    providers: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def parity_tolerance(precision: str, reference: torch.Tensor) -> float:
    """The largest |delta logit| accepted for `precision` given the reference logits."""
    if precision == "fp16":
        return FP16_RELATIVE_TOLERANCE * max(1.0, float(reference.abs().max()))
    return FP32_TOLERANCE


def check_parity(reference: torch.Tensor, output: torch.Tensor, precision: str, what: str) -> tuple[float, float]:
    """(max |delta|, tolerance); raises CompressorError with the measured error above the tolerance."""
    if reference.numel() and not bool(torch.isfinite(reference).all()):
        raise CompressorError(f"the model itself returns NaN/inf logits on the parity inputs, so {what} cannot be "
                              "checked and is not kept: check the model's weights (compressor inspect)")
    diff = float((reference.float() - output.float()).abs().max()) if reference.numel() else 0.0
    tol = parity_tolerance(precision, reference)
    if not diff <= tol:  # also catches NaN
        raise CompressorError(f"{what} does not match PyTorch: max |delta logit| = {diff:.3g} > tolerance {tol:.3g} "
                              f"({precision}); the file is not kept: report this model and format as a bug")
    return diff, tol


def inputs_label(sample_inputs: torch.Tensor | None, n: int, label: str | None = None) -> str:
    """What parity ran on, for the report: `label`, else ``inputs[n]`` or ``random[n]``."""
    return label or f"{'random' if sample_inputs is None else 'inputs'}[{n}]"


def discard_on_error(path: str | Path, check: Callable[[], T]) -> T:
    """Run `check`; if it raises, remove the artifact at `path` so a failed export leaves nothing behind."""
    try:
        return check()
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def require(module: str, extra: str, hint: str = "") -> Any:
    """Import an optional package, or fail with one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CompressorError(f"{module} is not installed ({exc.msg.splitlines()[0] if exc.msg else exc}): "
                              f"pip install 'compressor[{extra}]'{hint}") from None


def random_inputs(input_shape: Sequence[int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Uniform [0, 1] pixels of `input_shape` (C, H, W), seeded."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *input_shape, generator=gen)


def parse_batch_sizes(batch_sizes: Sequence[int] | None) -> list[int]:
    """Sorted distinct positive batch sizes (default [1])."""
    sizes = sorted(set(int(b) for b in (batch_sizes or [1])))
    if sizes[0] < 1:
        raise CompressorError(f"batch sizes must be >= 1, got {sizes[0]}")
    if sizes[-1] > MAX_BATCH_SIZE:
        raise CompressorError(f"batch size {sizes[-1]:,} is more than {MAX_BATCH_SIZE:,}, beyond what one device "
                              "holds for any image model: pass `batch_sizes` like 1,64")
    return sizes


class Exporter:
    """A deployment back-end: what it writes, what it needs, ``export(model, path, ...)`` and, for a file that `bench`
    runs, ``open_runner(path, ...)``."""

    name: ClassVar[str] = "exporter"
    suffixes: ClassVar[tuple[str, ...]] = ()  # file name endings it writes (the first is the usual one)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    requires: ClassVar[tuple[str, str] | None] = None  # (python module, pip extra) for optional packages

    @classmethod
    def check(cls, precision: str = "fp32", device: str = "cpu") -> None:
        """Fail with one line when `precision`, `device` or the optional package is not available."""
        if precision not in cls.precisions:
            raise CompressorError(f"`format` {cls.name} supports `precision` {' or '.join(cls.precisions)}, "
                                  f"not '{precision}'")
        kind = device.split(":")[0]
        if kind not in cls.devices:
            raise CompressorError(f"`format` {cls.name} runs on {' or '.join(cls.devices)}, not '{device}'")
        if kind == "cuda" and not torch.cuda.is_available():
            raise CompressorError(f"`format` {cls.name} on {device} needs a CUDA GPU and none is visible: "
                                  "use `device` cpu")
        if cls.requires is not None:
            require(*cls.requires)

    def export(self, model: nn.Module, path: str | Path, *, input_shape: Sequence[int], precision: str = "fp32",
               batch_sizes: Sequence[int] = (1,), device: str = "cpu", sample_inputs: torch.Tensor | None = None,
               parity_inputs: str | None = None, force: bool = False, **options: Any) -> ExportResult:
        """Write `model` to `path` in this format and check it against PyTorch."""
        raise NotImplementedError

    @classmethod
    def open_runner(cls, path: Path, *, device: str = "cpu", threads: int | None = None,
                    trust_program: bool = False) -> Runner:
        """A runner ``x -> logits`` for the file at `path` (one session: close it before opening the next)."""
        raise CompressorError(f"`format` {cls.name} writes files that bench does not run")

    @classmethod
    def runs_engines(cls) -> bool:
        """Whether `bench` runs this exporter's files: it defines its own `open_runner`."""
        return cls.open_runner.__func__ is not Exporter.open_runner.__func__  # type: ignore[attr-defined]

    @classmethod
    def opens(cls, path: Path) -> bool:
        """Whether `path` is an engine this exporter runs: by default, a file named with one of its `suffixes` (an
        exporter may refuse, in one line, a file of its suffix that it cannot run)."""
        return cls.runs_engines() and path.suffix in cls.suffixes

    @classmethod
    def check_trusted(cls, path: Path, trust_program: bool) -> None:
        """Refuse, in one line and before anything runs, an engine whose loading runs code from the file unless
        `trust_program` (none does by default)."""


def file_bytes(path: str | Path) -> int:
    """Size on disk of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def follows_2to4(weight: torch.Tensor) -> bool:
    """Whether every group of 4 consecutive input weights of each output has at most 2 nonzeros (NVIDIA 2:4)."""
    if weight.dim() < 2:
        return False
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % 4:
        return False
    return bool(((flat.reshape(flat.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def sparse_2to4_layers(model: nn.Module) -> list[str]:
    """Names of the Conv/Linear layers whose weights follow 2:4 (and are not all zero or all dense)."""
    names = []
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and w is not None and follows_2to4(w):
            names.append(name)
    return names
