"""In-memory dataset splits and the metadata every stage reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import CompressorError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an attack need to know about a dataset."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    augment: str = "none"  # "none" or "crop-flip" (random crop with padding 4, horizontal flip)
    default_eps: float = 8 / 255
    notes: str = ""

    def as_dict(self) -> dict:
        """A plain dict (for checkpoints and JSON)."""
        return {"name": self.name, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "mean": list(self.mean), "std": list(self.std), "classes": list(self.classes),
                "augment": self.augment, "default_eps": self.default_eps}


@dataclass
class ArraySplit:
    """Images (uint8 in [0, 255] or float in [0, 1], NCHW) and int64 labels, held in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise CompressorError(f"images must be 4-D (N, C, H, W), got shape {tuple(self.x.shape)}")
        if len(self.x) != len(self.y):
            raise CompressorError(f"{len(self.x)} images but {len(self.y)} labels")
        self.y = self.y.to(torch.int64)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor | np.ndarray) -> "ArraySplit":
        """The samples at `idx`."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ArraySplit(self.x[idx], self.y[idx])

    def head(self, n: int) -> "ArraySplit":
        """The first `n` samples (all of them when n exceeds the size)."""
        return ArraySplit(self.x[:n], self.y[:n])

    def float_images(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        x = self.x if idx is None else self.x[idx]
        return to_unit_float(x)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; floats are returned as float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


@dataclass
class DataBundle:
    """A dataset's train / validation / test splits and its metadata."""

    info: DatasetInfo
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    extra: dict = field(default_factory=dict)

    def split(self, name: str) -> ArraySplit:
        """The split called `name`: train, val, test, or all (every image, in the file's order where known)."""
        if name == "all":
            whole = self.extra.get("all")
            if whole is None:
                parts = [s for s in (self.train, self.val, self.test) if len(s)]
                mixed = len({s.x.dtype for s in parts}) > 1
                whole = ArraySplit(torch.cat([to_unit_float(s.x) if mixed else s.x for s in parts]),
                                   torch.cat([s.y for s in parts]))
                self.extra["all"] = whole
            return whole
        if name not in ("train", "val", "test"):
            raise CompressorError(f"unknown split '{name}': choose train, val, test or all (the whole dataset)")
        return getattr(self, name)

    def fingerprint(self, sample: int = 64) -> str:
        """A cheap digest of the data: every split's shapes, dtype and labels, and the pixels of a spread sample
        of its images (a resumed run refuses other data)."""
        h = hashlib.sha256()
        for name in ("train", "val", "test"):
            s = getattr(self, name)
            h.update(f"{name}:{tuple(s.x.shape)}:{s.x.dtype}".encode())
            h.update(s.y.numpy().tobytes())
            if len(s):
                idx = torch.linspace(0, len(s) - 1, min(sample, len(s))).long()
                h.update(s.x[idx].contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def describe(self, name: str) -> str:
        """What split `name` holds, in words: its name, or e.g. that it is a part held out of a file without one."""
        return self.extra.get("described", {}).get(name, name)

    def size(self) -> int:
        """Images in all splits together."""
        return len(self.extra["all"]) if "all" in self.extra else len(self.train) + len(self.val) + len(self.test)


def stratified_indices(y: np.ndarray | torch.Tensor, fraction_or_count: float, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, held_out) with class proportions kept; a fixed seed makes it reproducible."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    idx = np.arange(len(y))
    if fraction_or_count <= 0:
        return idx, idx[:0]
    try:
        rest, held = train_test_split(idx, test_size=fraction_or_count, random_state=seed, stratify=y)
    except ValueError as exc:  # a size out of range, fewer held-out samples than classes, a class of one
        raise CompressorError(f"cannot hold out a stratified split of {fraction_or_count} from {len(y)} samples "
                              f"({exc})") from exc
    return np.sort(rest), np.sort(held)


def carve_validation(train: ArraySplit, val_size: float | int, seed: int = 0) -> tuple[ArraySplit, ArraySplit]:
    """Carve a stratified validation split from `train` (never from the test set)."""
    try:
        rest, held = stratified_indices(train.y.numpy(), val_size, seed)
    except CompressorError as exc:
        raise CompressorError(f"validation split: {exc}; pass another `val_size` (a count, or a fraction in (0, 1))"
                              ) from exc
    return train.subset(rest), train.subset(held)


DatasetFactory = Callable[..., DataBundle]
