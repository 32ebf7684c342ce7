"""Tiny-ImageNet-200 (64x64 colour, 200 classes) from its unpacked zip, decoded into memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import CompressorError
from ..registry import DATASETS
from .core import ArraySplit, DataBundle, DatasetInfo, carve_validation

DEFAULT_VAL_FRACTION = 0.1
FOLDER = "tiny-imagenet-200"
SIZE = 64
LAYOUT = (f"{FOLDER}/{{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,val/val_annotations.txt}} "
          "(or val/<wnid>/*.JPEG)")
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _val_samples(val_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of the official validation images, from val_annotations.txt or an ImageFolder layout."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    ann = val_dir / "val_annotations.txt"
    if ann.is_file():
        samples = []
        for lineno, line in enumerate(ann.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or parts[1] not in class_to_idx:
                raise CompressorError(f"{ann}:{lineno}: expected 'FILE WNID ...' with a WNID among the training "
                                      f"classes, got {line.strip()!r}")
            path = val_dir / "images" / parts[0]
            if not path.is_file():
                raise CompressorError(f"{ann}:{lineno} names {path}, which does not exist; re-extract {FOLDER}")
            samples.append((str(path), class_to_idx[parts[1]]))
        return samples
    unknown = sorted(d.name for d in val_dir.iterdir() if d.is_dir() and d.name not in class_to_idx)
    if unknown:
        raise CompressorError(f"{val_dir} has no val_annotations.txt and its folder {unknown[0]!r} is not a "
                              f"training class: expected {LAYOUT}")
    return make_dataset(str(val_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)


def _class_names(folder: Path, wnids: list[str]) -> tuple[str, ...]:
    """Readable names from words.txt (first synonym) when present, else the WordNet ids."""
    words = folder / "words.txt"
    table: dict[str, str] = {}
    if words.is_file():
        for line in words.read_text(errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            if text:
                table[wnid.strip()] = text.split(",")[0].strip()
    return tuple(table.get(w, w) for w in wnids)


def _decode(samples: list[tuple[str, int]], what: str) -> ArraySplit:
    """Decode (path, label) pairs into a uint8 (N, 3, 64, 64) split, with a progress bar."""
    from PIL import Image, UnidentifiedImageError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    x = torch.empty((len(samples), 3, SIZE, SIZE), dtype=torch.uint8)
    y = torch.tensor([label for _, label in samples], dtype=torch.int64)
    columns = (TextColumn(f"decoding Tiny-ImageNet {what}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(what, total=len(samples))
        for i, (path, _) in enumerate(samples):
            try:
                with Image.open(path) as img:
                    arr = np.array(img.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                raise CompressorError(f"cannot decode {path} ({exc}); re-extract {FOLDER}") from exc
            if arr.shape != (SIZE, SIZE, 3):
                raise CompressorError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, expected {SIZE}x{SIZE} like every "
                                      "Tiny-ImageNet image; re-extract the official zip")
            x[i] = torch.from_numpy(arr).permute(2, 0, 1)
            if i % 512 == 0:
                progress.update(task, completed=i)
        progress.update(task, completed=len(samples))
    return ArraySplit(x, y)


@DATASETS.register("tiny-imagenet")
def load_tiny_imagenet(root: Path | None = None, download: bool = False, val_size: float | int | None = None,
                       seed: int = 0, **_) -> DataBundle:
    """Tiny-ImageNet-200 (64x64 colour, 200 classes; ROOT/tiny-imagenet-200; official val is the test split)."""
    from torchvision.datasets import ImageFolder

    if root is None:
        raise CompressorError(f"Tiny-ImageNet needs a data directory: pass `data_root` DIR holding {LAYOUT}")
    folder = root / FOLDER
    train_dir, val_dir = folder / "train", folder / "val"
    if not train_dir.is_dir() or not val_dir.is_dir():
        missing = train_dir if not train_dir.is_dir() else val_dir
        if download:
            raise CompressorError(f"Tiny-ImageNet cannot be downloaded automatically (torchvision has no "
                                  f"downloader for it): fetch {URL}, unzip it into {root} and drop `download`")
        raise CompressorError(f"Tiny-ImageNet not found under {root}: expected {root}/{LAYOUT}, missing {missing}; "
                              f"pass `data_root` DIR pointing at its parent (there is no `download`: fetch {URL})")
    try:
        train_folder = ImageFolder(str(train_dir))
    except (FileNotFoundError, OSError) as exc:
        raise CompressorError(f"no training images in {train_dir} ({exc}): expected {root}/{LAYOUT}") from exc
    wnids_file = folder / "wnids.txt"
    if wnids_file.is_file():
        listed = set(wnids_file.read_text().split())
        if listed != set(train_folder.classes):
            odd = sorted(listed.symmetric_difference(train_folder.classes))[0]
            raise CompressorError(f"{wnids_file} and the folders in {train_dir} disagree (e.g. on {odd}); "
                                  f"re-extract {FOLDER}")
    val_samples = _val_samples(val_dir, train_folder.class_to_idx)
    if not val_samples:
        raise CompressorError(f"no validation images in {val_dir}: expected {root}/{LAYOUT}")
    train = _decode(train_folder.samples, "train")
    test = _decode(val_samples, "val")
    num_classes = len(train_folder.classes)
    info = DatasetInfo(
        name="tiny-imagenet", num_classes=num_classes, input_shape=(3, SIZE, SIZE), mean=(0.4802, 0.4481, 0.3975),
        std=(0.2770, 0.2691, 0.2821), classes=_class_names(folder, train_folder.classes), augment="crop-flip",
        default_eps=8 / 255,
        notes="Tiny-ImageNet-200: the official val set is the test split; validation carved from train",
    )
    train, val = carve_validation(train, val_size or DEFAULT_VAL_FRACTION, seed)
    return DataBundle(info, train, val, test)
