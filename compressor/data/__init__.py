"""Datasets: each loads into in-memory train / validation / test splits; nothing downloads by default."""

from __future__ import annotations

from pathlib import Path

from ..errors import CompressorError
from ..parsing import check_seed
from ..registry import DATASETS
from .core import ArraySplit, DataBundle, DatasetInfo, carve_validation, stratified_indices, to_unit_float
from .loader import BatchLoader, random_crop_flip

register_dataset = DATASETS.register


def list_datasets(pattern: str | None = None) -> list[str]:
    """Registered dataset names matching a glob `pattern` (``npz:PATH`` is not listed)."""
    return DATASETS.names(pattern)


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = False,
                 val_size: float | int | None = None, seed: int = 0) -> DataBundle:
    """Load dataset `name` from `root` (its usual on-disk format) into train / val / test splits."""
    check_seed(seed)
    if val_size is not None and not val_size > 0:  # training picks its best epoch on the validation split
        raise CompressorError(f"`val_size` must be a count >= 1 or a fraction in (0, 1), got {val_size}: training "
                              "selects its best epoch on the validation split, so it cannot be empty")
    factory = DATASETS.get(name)
    return factory(root=Path(root).expanduser() if root else None, download=download, val_size=val_size, seed=seed)


def dataset_files(name: str | None) -> list[Path]:
    """The files a dataset name reads directly (an ``npz:PATH`` file), so that no output overwrites them."""
    if name is None or not name.startswith(npz.PREFIX) or not name[len(npz.PREFIX):].strip():
        return []
    return [Path(name[len(npz.PREFIX):].strip()).expanduser()]


# Built-in datasets register themselves on import.
from . import digits, torchvision_sets, cifar, tiny_imagenet, npz  # noqa: E402,F401

__all__ = ["ArraySplit", "BatchLoader", "DataBundle", "DatasetInfo", "carve_validation", "dataset_files",
           "list_datasets",
           "load_dataset", "random_crop_flip", "register_dataset", "stratified_indices", "to_unit_float"]
