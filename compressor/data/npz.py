"""``npz:PATH``: any image classification set saved as a NumPy .npz file (x, y or x_train, y_train, x_test, y_test);
``npz:TRAIN,TEST``: a training file and a test file (each x, y), validation carved from the training file only."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import numpy.lib.format as npformat
import torch

from ..budget import MAX_CLASSES, check_allocation
from ..errors import CompressorError, error_line
from ..registry import DATASETS
from .core import ArraySplit, DataBundle, DatasetInfo, carve_validation, stratified_indices

PREFIX = "npz:"
TEST_FRACTION = 0.2  # with only x, y: the fixed stratified test split
DEFAULT_VAL_FRACTION = 0.1  # validation, carved from the training part
PAIR_HELP = "uint8 'x' (N,C,H,W), (N,H,W,C) or (N,H,W) and integer 'y'"
MAX_COMPRESSION_RATIO = 100  # image data deflates far less; beyond this a member is a compression bomb
BOMB_MIN_BYTES = 64 * 1024**2  # small members may compress to nothing (a test set of blank images)
KEYS_HELP = "uint8 'x' (N,C,H,W), (N,H,W,C) or (N,H,W) and integer 'y', or x_train/y_train/x_test/y_test"


def _images(arr: np.ndarray, where: str) -> torch.Tensor:
    """An NCHW / NHWC / NHW image array -> a uint8 (or float in [0, 1]) NCHW tensor."""
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise CompressorError(f"{where} holds NaN or inf pixels: expected uint8 pixels in 0..255 (or floats in [0, 1])")
    if arr.dtype != np.uint8 and not (arr.dtype.kind == "f" and arr.size and 0 <= arr.min() and arr.max() <= 1):
        raise CompressorError(f"{where} is {arr.dtype}: expected uint8 pixels in 0..255 (or floats in [0, 1])")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[1] not in (1, 3):
            if arr.shape[3] not in (1, 3):
                raise CompressorError(f"{where} has shape {arr.shape}: expected 1 or 3 channels in position 1 (NCHW) "
                                      "or 3 (NHWC)")
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise CompressorError(f"{where} has shape {arr.shape}: expected (N,C,H,W), (N,H,W,C) or (N,H,W) images")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    return x if x.dtype == torch.uint8 else x.float()


def _labels(arr: np.ndarray, n: int, where: str) -> torch.Tensor:
    """Integer labels, one per image."""
    if arr.dtype.kind not in "iu":
        raise CompressorError(f"{where} is {arr.dtype}: expected integer class labels")
    arr = arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr
    if arr.ndim != 1:
        raise CompressorError(f"{where} has shape {arr.shape}: expected one label per image, shape (N,)")
    if len(arr) != n:
        raise CompressorError(f"{where} has {len(arr)} labels for {n} images: they must match")
    if len(arr) and arr.min() < 0:
        raise CompressorError(f"{where} contains the negative label {arr.min()}: labels must be 0..num_classes-1")
    if len(arr) and arr.max() >= MAX_CLASSES:
        raise CompressorError(f"{where} contains the label {arr.max()}: labels must be 0..num_classes-1, with at most "
                              f"{MAX_CLASSES:,} classes")
    return torch.from_numpy(arr.astype(np.int64))


def _check_members(path: Path) -> None:
    """Read every member's .npy header (shape, dtype) and zip sizes before numpy reads any data: refuse declared
    sizes beyond the memory budget, members that are not what their header declares, and compression bombs."""
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                where = f"{path}: '{info.filename[:-4]}'"
                if info.compress_size and info.file_size > BOMB_MIN_BYTES \
                        and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size:
                    raise CompressorError(f"{where} inflates {info.compress_size:,} bytes to {info.file_size:,} (over "
                                          f"{MAX_COMPRESSION_RATIO}x): a compression bomb, not image data; nothing "
                                          "was read")
                with archive.open(info) as member:
                    version = npformat.read_magic(member)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f".npy format version {version}")
                    read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
                    shape, _, dtype = read(member)
                    nbytes = math.prod(shape) * dtype.itemsize
                    check_allocation(total + nbytes, f"{where} declares shape {shape} of {dtype}, which",
                                     "use a smaller dataset file")
                    if not dtype.hasobject and member.tell() + nbytes != info.file_size:
                        raise CompressorError(f"{where} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds "
                                              f"{info.file_size - member.tell():,} bytes: the file is truncated or "
                                              "corrupt; save it again with numpy.savez")
                    total += nbytes
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CompressorError(f"{path} is not a readable .npz file ({error_line(exc, 160)}); save it with "
                              "numpy.savez") from None


def _array(data, key: str, path: Path) -> np.ndarray:
    try:
        return data[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy refuses object arrays without allow_pickle
            raise CompressorError(f"{path}: '{key}' is an object array (pickled Python objects), which is never "
                                  "loaded: save plain uint8 images and integer labels with numpy.savez") from None
        raise CompressorError(f"{path}: the member '{key}' is truncated or corrupt ({error_line(exc)}): save the file "
                              "again with numpy.savez") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:  # a bad CRC, a member cut short
        raise CompressorError(f"{path}: the member '{key}' of this zip (.npz) archive is corrupt or truncated "
                              f"({error_line(exc)}): save the file again with numpy.savez") from None


def _split(data, xkey: str, ykey: str, path: Path) -> ArraySplit:
    x = _images(_array(data, xkey, path), f"{path}: '{xkey}'")
    split = ArraySplit(x, _labels(_array(data, ykey, path), len(x), f"{path}: '{ykey}'"))
    if x.dtype == torch.uint8 and x.numel() and int(x.max()) == 1:  # checked once the arrays are otherwise valid
        raise CompressorError(f"{path}: '{xkey}' is uint8 with 1 as its largest pixel: it looks like 0/1 (binarised) data, "
                              "which would be read as near-black images; save it as floats in [0, 1], or multiply it "
                              "by 255")
    return split


def _open(path: Path, name: str, holding: str = KEYS_HELP):
    """The opened .npz archive at `path` (a one-line error when it is missing or unreadable)."""
    if not path.is_file():
        raise CompressorError(f"{name}: no file {path}; give the path of an .npz holding {holding}")
    _check_members(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CompressorError(f"{path} is not a readable .npz file ({exc}); save it with numpy.savez") from exc


def load_npz(path: Path, name: str, val_size: float | int | None = None, seed: int = 0) -> DataBundle:
    """Read `path` into train / val / test splits (see the module docstring for the accepted keys)."""
    with _open(path, name) as data:
        keys = set(data.files)
        full = None  # with only x, y: the whole file, in its order (--split all)
        described = {}
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            train = _split(data, "x_train", "y_train", path)
            test = _split(data, "x_test", "y_test", path)
            if {"x_val", "y_val"} <= keys:
                val = _split(data, "x_val", "y_val", path)
                notes = f"{path}: train / val / test as stored"
            else:
                train, val = carve_validation(train, val_size or DEFAULT_VAL_FRACTION, seed)
                notes = (f"{path}: train / test as stored; validation ({val_size or DEFAULT_VAL_FRACTION}) "
                         f"carved stratified from train, seed {seed}")
        elif {"x", "y"} <= keys:
            full = _split(data, "x", "y", path)
            trainval, test_idx = stratified_indices(full.y.numpy(), TEST_FRACTION, seed)
            train, val = carve_validation(full.subset(trainval), val_size or DEFAULT_VAL_FRACTION, seed)
            test = full.subset(test_idx)
            described["test"] = (f"test split (a stratified {TEST_FRACTION:.0%} of x, y held out with seed {seed}: "
                                 "the file has no test split of its own)")
            notes = (f"{path}: fixed stratified split of x, y with seed {seed}: {TEST_FRACTION:.0%} test, then "
                     f"validation ({val_size or DEFAULT_VAL_FRACTION}) from the rest; --split all: every image")
        else:
            raise CompressorError(f"{path} has keys {sorted(keys) or 'none'}: expected {KEYS_HELP}")
    return _bundle(name, train, val, test, notes, path,
                   extra={"all": full, "described": described} if full is not None else {})


def _whole(path: Path, name: str, role: str) -> ArraySplit:
    """Every image of a file holding plain x, y (one side of a TRAIN,TEST pair)."""
    with _open(path, name, PAIR_HELP) as data:
        if not {"x", "y"} <= set(data.files):
            raise CompressorError(f"{path} (the {role} file of {name}) has keys {sorted(data.files) or 'none'}: "
                                  f"expected {PAIR_HELP}")
        return _split(data, "x", "y", path)


def load_npz_pair(train_path: Path, test_path: Path, name: str, val_size: float | int | None = None,
                  seed: int = 0) -> DataBundle:
    """A training file and a test file (each x, y): validation carved from the training file, the test file whole
    and in its order."""
    if train_path.resolve() == test_path.resolve():
        raise CompressorError(f"{name} names {train_path} as both the training and the test file: give two files")
    train, val = carve_validation(_whole(train_path, name, "training"), val_size or DEFAULT_VAL_FRACTION, seed)
    test = _whole(test_path, name, "test")
    notes = (f"train {train_path}, validation ({val_size or DEFAULT_VAL_FRACTION}) carved stratified from it with "
             f"seed {seed}; test {test_path}: every image, in its order")
    return _bundle(name, train, val, test, notes, train_path)


def _bundle(name: str, train: ArraySplit, val: ArraySplit, test: ArraySplit, notes: str, path: Path,
            extra: dict | None = None) -> DataBundle:
    """Check that the splits agree and describe them (statistics from the training split)."""
    shapes = {tuple(s.x.shape[1:]) for s in (train, val, test) if len(s)}
    if len(shapes) > 1:
        raise CompressorError(f"{name}: the splits have different image shapes {sorted(shapes)}; they must match")
    if len(train) == 0:
        raise CompressorError(f"{path}: the training split is empty")
    c, h, w = train.x.shape[1:]
    xf = train.float_images()
    mean = tuple(round(float(v), 4) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(round(float(v), 4) for v in xf.std(dim=(0, 2, 3)))
    num_classes = int(max(int(s.y.max()) for s in (train, val, test) if len(s))) + 1
    info = DatasetInfo(
        name=name, num_classes=num_classes, input_shape=(int(c), int(h), int(w)), mean=mean, std=std,
        classes=tuple(str(i) for i in range(num_classes)), augment="none",
        default_eps=8 / 255 if c == 3 else 0.1, notes=notes,
    )
    return DataBundle(info, train, val, test, extra=extra or {})


def _locate(part: str, root: Path | None) -> Path:
    """A relative path from the working directory, else from --data-root."""
    path = Path(part.strip()).expanduser()
    if not path.is_absolute() and not path.exists() and root is not None and (root / path).exists():
        return root / path
    return path


def _resolve(name: str) -> Callable | None:
    """``npz:PATH`` or ``npz:TRAIN,TEST`` -> a dataset factory reading the file(s) (relative paths: the working
    directory, then --data-root)."""
    if not name.startswith(PREFIX):
        return None
    text = name[len(PREFIX):].strip()

    def factory(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
                seed: int = 0, **_) -> DataBundle:
        """A NumPy .npz image classification file, or a TRAIN,TEST pair of them."""
        if not text:
            raise CompressorError(f"'{name}' names no file: write npz:PATH (e.g. npz:data/mine.npz) or "
                                  "npz:TRAIN.npz,TEST.npz")
        if "," in text and not _locate(text, root).exists():  # a path holding a comma is still one file
            parts = text.split(",")
            if len(parts) != 2 or not all(p.strip() for p in parts):
                raise CompressorError(f"'{name}' is not npz:PATH or npz:TRAIN,TEST (two files, one comma): write "
                                      "e.g. npz:cifar10_train.npz,cifar10_test.npz")
            return load_npz_pair(_locate(parts[0], root), _locate(parts[1], root), name, val_size, seed)
        return load_npz(_locate(text, root), name, val_size, seed)

    return factory


DATASETS.add_resolver(_resolve)
