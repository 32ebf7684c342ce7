"""CIFAR-10 and CIFAR-100 from the "python version" batch files, read with a restricted unpickler."""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CompressorError
from ..registry import DATASETS
from .core import ArraySplit, DataBundle, DatasetInfo, carve_validation

DEFAULT_VAL_SIZE = 5000

try:  # numpy >= 2 (and 1.26, which added the alias for reading numpy-2 pickles)
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# Everything a CIFAR batch pickle (Python 2 cPickle, or protocol 2 from Python 3) may name: numpy's array
# reconstruction and dtype, and the bytes constructors that protocol 2 uses for byte strings.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("__builtin__", "bytes"): bytes,
    ("builtins", "bytes"): bytes,
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and numpy arrays; any other global is refused."""

    def __init__(self, file, source: Path):
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise CompressorError(f"refusing to load {self._source}: it references {module}.{name}, which a CIFAR "
                                  "batch never contains (a corrupt or malicious file); replace it with the "
                                  "official CIFAR python-version file")
        return obj


def safe_load_batch(path: Path) -> Any:
    """Unpickle one CIFAR file without executing code from it; errors are one-line CompressorErrors."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CompressorError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return _CifarUnpickler(io.BytesIO(raw), path).load()
    except CompressorError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise CompressorError(f"{path} is not a readable CIFAR batch ({type(exc).__name__}: {exc}); "
                              "replace it with the official CIFAR python-version file") from exc


def _key(d: dict, key: str) -> Any:
    """`d[key]` whether the pickle stored the key as bytes (Python 2 files) or as str."""
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def _read_batch(path: Path, label_key: str, num_classes: int) -> ArraySplit:
    """One batch file -> a uint8 (N, 3, 32, 32) split with int64 labels."""
    batch = safe_load_batch(path)
    if not isinstance(batch, dict):
        raise CompressorError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict; replace it with the "
                              "official CIFAR python-version file")
    data, labels = _key(batch, "data"), _key(batch, label_key)
    if data is None or labels is None:
        raise CompressorError(f"{path} lacks the '{'data' if data is None else label_key}' entry of a CIFAR batch; "
                              "replace it with the official CIFAR python-version file")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CompressorError(f"{path}: 'data' is {data.dtype} {tuple(data.shape)}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise CompressorError(f"{path}: '{label_key}' has {labels.size} entries of {labels.dtype} for {len(data)} "
                              "images, expected one integer label per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise CompressorError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    x = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32)))  # rows are R plane, G plane, B plane
    return ArraySplit(x, torch.from_numpy(labels.astype(np.int64)))


def _concat(parts: list[ArraySplit]) -> ArraySplit:
    return ArraySplit(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))


@dataclass(frozen=True)
class _Spec:
    """Where one CIFAR variant lives and how its files are named."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    tv_class: str  # torchvision.datasets class used for --download
    info: DatasetInfo

    @property
    def layout(self) -> str:
        return f"{self.folder}/{{{','.join(self.train_files + (self.test_file,))}}}"


_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR100_NAMES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate
poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm""".split())  # the fine labels, as in cifar-100-python/meta

_CIFAR10 = _Spec(
    "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
    "batches.meta", "labels", "label_names", "CIFAR10",
    DatasetInfo(name="cifar10", num_classes=10, input_shape=(3, 32, 32), mean=(0.4914, 0.4822, 0.4465),
                std=(0.2471, 0.2435, 0.2616), classes=_CIFAR10_NAMES, augment="crop-flip", default_eps=8 / 255,
                notes="CIFAR-10 50k train / 10k test; validation carved from train"))
_CIFAR100 = _Spec(
    "CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names", "CIFAR100",
    DatasetInfo(name="cifar100", num_classes=100, input_shape=(3, 32, 32), mean=(0.5071, 0.4865, 0.4409),
                std=(0.2673, 0.2564, 0.2762), classes=_CIFAR100_NAMES,
                augment="crop-flip", default_eps=8 / 255,
                notes="CIFAR-100 (fine labels) 50k train / 10k test; validation carved from train"))


def _class_names(spec: _Spec, folder: Path) -> tuple[str, ...]:
    """Class names from the meta file when present, else the built-in ones."""
    path = folder / spec.meta_file
    if not path.is_file():
        return spec.info.classes
    meta = safe_load_batch(path)
    names = _key(meta, spec.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != spec.info.num_classes:
        raise CompressorError(f"{path}: expected '{spec.names_key}' with {spec.info.num_classes} class names; "
                              "replace it with the official CIFAR python-version file")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def _download(spec: _Spec, root: Path) -> None:
    """Fetch and unpack the official archive with torchvision (MD5-checked); nothing is unpickled here."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(tvd, spec.tv_class)
    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except (RuntimeError, OSError) as exc:
        raise CompressorError(f"could not download {spec.title} into {root} ({exc}); check the network, or "
                              f"fetch {cls.url} yourself and unpack it there") from exc


def _load(spec: _Spec, root: Path | None, download: bool, val_size: float | int | None, seed: int) -> DataBundle:
    if root is None:
        raise CompressorError(f"{spec.title} needs a data directory: pass `data_root` DIR "
                              + ("(where to download it)" if download
                                 else f"(the parent of {spec.folder}/), or `download`"))
    folder = root / spec.folder
    needed = spec.train_files + (spec.test_file,)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing and download:
        _download(spec, root)
        missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise CompressorError(f"{spec.title} not found under {root}: expected {root}/{spec.layout} (the python "
                              f"version from the CIFAR site), missing {missing[0]}; pass `data_root` DIR pointing "
                              "at its parent, or `download`")
    n = spec.info.num_classes
    train = _concat([_read_batch(folder / f, spec.label_key, n) for f in spec.train_files])
    test = _read_batch(folder / spec.test_file, spec.label_key, n)
    info = spec.info
    names = _class_names(spec, folder)
    if names != info.classes:
        info = replace(info, classes=names)
    train, val = carve_validation(train, val_size or DEFAULT_VAL_SIZE, seed)
    return DataBundle(info, train, val, test)


@DATASETS.register("cifar10")
def load_cifar10(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
                 seed: int = 0, **_) -> DataBundle:
    """CIFAR-10 (32x32 colour, 10 classes; ROOT/cifar-10-batches-py, the python version)."""
    return _load(_CIFAR10, root, download, val_size, seed)


@DATASETS.register("cifar100")
def load_cifar100(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
                  seed: int = 0, **_) -> DataBundle:
    """CIFAR-100 (32x32 colour, 100 fine classes; ROOT/cifar-100-python, the python version)."""
    return _load(_CIFAR100, root, download, val_size, seed)
