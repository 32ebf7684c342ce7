"""MNIST, Fashion-MNIST and SVHN, read from their usual on-disk files through torchvision's dataset classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import CompressorError
from ..registry import DATASETS
from .core import ArraySplit, DataBundle, DatasetInfo, carve_validation

DEFAULT_VAL_SIZE = 5000
_DIGIT_NAMES = tuple(str(i) for i in range(10))
_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class _Spec:
    """How to find, read and describe one torchvision-backed dataset."""

    title: str  # for messages, e.g. "Fashion-MNIST"
    class_name: str  # the torchvision.datasets class
    files: tuple[str, ...]  # paths relative to root that must exist (without --download)
    layout: str  # the expected layout, relative to root, for messages
    split_kwargs: Callable[[bool], dict]  # train? -> constructor keyword arguments
    info: DatasetInfo
    alt_files: tuple[str, ...] = ()  # another complete set of files torchvision also reads


def _idx_spec(title: str, class_name: str, info: DatasetInfo) -> _Spec:
    return _Spec(title, class_name, tuple(f"{class_name}/raw/{f}" for f in _IDX_FILES),
                 f"{class_name}/raw/{{{','.join(_IDX_FILES)}}} (the uncompressed idx files)",
                 lambda train: {"train": train}, info,
                 alt_files=(f"{class_name}/processed/training.pt", f"{class_name}/processed/test.pt"))


_MNIST = _idx_spec("MNIST", "MNIST", DatasetInfo(
    name="mnist", num_classes=10, input_shape=(1, 28, 28), mean=(0.1307,), std=(0.3081,), classes=_DIGIT_NAMES,
    augment="none", default_eps=0.3, notes="MNIST 60k train / 10k test; validation carved from train"))
_FASHION = _idx_spec("Fashion-MNIST", "FashionMNIST", DatasetInfo(
    name="fashion-mnist", num_classes=10, input_shape=(1, 28, 28), mean=(0.2860,), std=(0.3530,),
    classes=_FASHION_NAMES, augment="none", default_eps=0.1,
    notes="Fashion-MNIST 60k train / 10k test; validation carved from train"))
_SVHN = _Spec(
    "SVHN", "SVHN", ("train_32x32.mat", "test_32x32.mat"),
    "{train_32x32.mat,test_32x32.mat} (the cropped-digits format 2 files)",
    lambda train: {"split": "train" if train else "test"},
    DatasetInfo(name="svhn", num_classes=10, input_shape=(3, 32, 32), mean=(0.4377, 0.4438, 0.4728),
                std=(0.1980, 0.2010, 0.1970), classes=_DIGIT_NAMES, augment="crop-flip", default_eps=8 / 255,
                notes="SVHN cropped digits, train (73,257) / test (26,032), 'extra' unused; validation carved "
                      "from train; label 10 mapped to 0; horizontal flips are debatable for digits"))


def _load(spec: _Spec, root: Path | None, download: bool, val_size: float | int | None, seed: int) -> DataBundle:
    """Read `spec`'s train and test files with torchvision into uint8 NCHW splits; carve validation from train."""
    import torchvision.datasets as tvd

    if root is None:
        raise CompressorError(f"{spec.title} needs a data directory: pass `data_root` DIR "
                              + ("(where to download it)" if download
                                 else f"holding DIR/{spec.layout}, or `download`"))
    missing = [f for f in spec.files if not (root / f).is_file()]
    has_alt = bool(spec.alt_files) and all((root / f).is_file() for f in spec.alt_files)
    if missing and not download and not has_alt:
        raise CompressorError(f"{spec.title} not found under {root}: expected {root}/{spec.layout}, missing "
                              f"{missing[0]}; pass `data_root` DIR for the directory holding them, or `download`")
    cls = getattr(tvd, spec.class_name)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), download=download, **spec.split_kwargs(train))
        except (RuntimeError, OSError) as exc:  # torchvision: "Dataset not found or corrupted", failed downloads
            what = "download" if download else "read"
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CompressorError(f"could not {what} {spec.title} under {root} ({msg}): expected "
                                  f"{root}/{spec.layout}; check the files (and the network for `download`)"
                                  ) from exc
        splits.append(_to_split(ds.data, ds.targets if hasattr(ds, "targets") else ds.labels))
    train_split, test_split = splits
    train_split, val_split = carve_validation(train_split, val_size or DEFAULT_VAL_SIZE, seed)
    return DataBundle(spec.info, train_split, val_split, test_split)


def _to_split(data, labels) -> ArraySplit:
    """torchvision's ``.data`` (N,H,W) or (N,C,H,W) and labels -> a uint8 NCHW / int64 split."""
    x = torch.as_tensor(np.asarray(data))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    y = torch.as_tensor(np.asarray(labels))
    return ArraySplit(x.to(torch.uint8).contiguous(), y.to(torch.int64))


@DATASETS.register("mnist")
def load_mnist(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
               seed: int = 0, **_) -> DataBundle:
    """MNIST handwritten digits (28x28 grey, 10 classes; idx files under ROOT/MNIST/raw)."""
    return _load(_MNIST, root, download, val_size, seed)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
                       seed: int = 0, **_) -> DataBundle:
    """Fashion-MNIST clothing images (28x28 grey, 10 classes; idx files under ROOT/FashionMNIST/raw)."""
    return _load(_FASHION, root, download, val_size, seed)


@DATASETS.register("svhn")
def load_svhn(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
              seed: int = 0, **_) -> DataBundle:
    """SVHN street-view house numbers (32x32 colour, 10 classes; ROOT/{train,test}_32x32.mat)."""
    return _load(_SVHN, root, download, val_size, seed)
