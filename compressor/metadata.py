"""The schema of a checkpoint's recorded metadata and of an architecture's keyword arguments: every field a file
holds is checked for its type and range here, before anything reads it (one line naming the field)."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .budget import MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIDE, MAX_JSON_DEPTH, MAX_WIDTH
from .errors import CompressorError

# keyword arguments that size a zoo architecture: positive integers (a fraction or a negative never builds a model)
SIZE_KWARGS = {"num_classes": MAX_CLASSES, "in_chans": MAX_CHANNELS, "width": MAX_WIDTH, "hidden": MAX_WIDTH,
               "depth": MAX_WIDTH, "widen_factor": MAX_WIDTH, "fc_width": MAX_WIDTH, "embed_dim": MAX_WIDTH,
               "num_heads": MAX_WIDTH, "patch_size": MAX_IMAGE_SIDE, "img_size": MAX_IMAGE_SIDE,
               "image_size": MAX_IMAGE_SIDE}
MAX_TEXT = 4096  # characters of a recorded name (architecture, dataset, class)


class FieldError(CompressorError):
    """A field that does not match the schema (its path, what it holds, what was expected)."""


def _held(value: Any) -> str:
    text = repr(value) if not isinstance(value, (torch.Tensor, nn.Module)) else f"shape {tuple(value.shape)}" \
        if isinstance(value, torch.Tensor) else ""
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}".strip()


def _fail(where: str, value: Any, expected: str) -> None:
    raise FieldError(f"'{where}' holds {_held(value)}, expected {expected}")


def plain_data(value: Any, where: str, depth: int = 0) -> None:
    """Nested dicts (string keys), lists, strings, numbers, None and tensors only, at most MAX_JSON_DEPTH deep."""
    if depth > MAX_JSON_DEPTH:
        raise FieldError(f"'{where}' nests more than {MAX_JSON_DEPTH} levels deep, expected plain flat data")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                _fail(f"{where} key", k, "text")
            plain_data(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            plain_data(v, f"{where}[{i}]", depth + 1)
    elif not isinstance(value, (str, int, float, type(None), torch.Tensor)):
        _fail(where, value, "plain data (text, numbers, lists, dicts)")


def _text(value: Any, where: str, empty: bool = False) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not empty and not value):
        _fail(where, value, f"{'' if empty else 'non-empty '}text of at most {MAX_TEXT} characters")


def _numbers(value: Any, where: str, positive: bool = False) -> None:
    ok = isinstance(value, (list, tuple)) and 0 < len(value) <= MAX_CHANNELS and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in value)
    if not ok:
        _fail(where, value, f"a list of 1 to {MAX_CHANNELS} finite{' positive' if positive else ''} numbers")


def _count(value: Any, where: str, high: int) -> None:
    if type(value) is not int or not 1 <= value <= high:  # bool is an int subclass, and never a size
        _fail(where, value, f"an integer in [1, {high:,}]")


def input_shape(value: Any, where: str = "input_shape") -> None:
    """(C, H, W) with C in [1, MAX_CHANNELS] and sides in [1, MAX_IMAGE_SIDE]; empty: not known."""
    if isinstance(value, (list, tuple)) and not value:
        return
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        _fail(where, value, "[channels, height, width]")
    for i, (v, name, high) in enumerate(zip(value, ("channels", "height", "width"),
                                            (MAX_CHANNELS, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))):
        _count(v, f"{where}[{i}] ({name})", high)


def _arch_kwargs(kwargs: Any, where: str) -> None:
    if not isinstance(kwargs, Mapping):
        _fail(where or "arch_kwargs", kwargs, "a dict of keyword arguments")
    plain_data(kwargs, where or "arch_kwargs")
    for key, value in kwargs.items():
        path = f"{where}.{key}" if where else key
        if key in SIZE_KWARGS and value is not None:
            _count(value, path, SIZE_KWARGS[key])
        elif key in ("mean", "std") and value is not None:
            _numbers(value, path, positive=key == "std")
        elif key == "kwargs" and value is not None:
            _arch_kwargs(value, path)


def check_arch_kwargs(kwargs: Any, what: str = "`arch_kwargs`") -> dict:
    """Keyword arguments of an architecture: a dict of plain data; sizes positive integers in range, mean/std lists
    of finite numbers (std > 0); an import path's own ``kwargs`` likewise. `what` names them in the error."""
    try:
        _arch_kwargs(kwargs, "")
    except FieldError as exc:
        raise CompressorError(f"{what}: {exc}: correct that argument") from None
    return dict(kwargs)


def _dataset(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        _fail(where, value, "a dict describing the dataset")
    plain_data(value, where)
    checks: dict[str, Callable[[Any, str], None]] = {
        "name": _text, "augment": _text,
        "num_classes": lambda v, w: _count(v, w, MAX_CLASSES),
        "input_shape": input_shape, "mean": _numbers, "std": lambda v, w: _numbers(v, w, positive=True),
        "classes": _classes, "default_eps": _eps}
    for key, check in checks.items():
        if value.get(key) is not None:
            check(value[key], f"{where}.{key}")


def _classes(value: Any, where: str) -> None:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_CLASSES or not all(isinstance(v, str) for v in value):
        _fail(where, value, f"a list of at most {MAX_CLASSES:,} class names")


def _eps(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        _fail(where, value, "a number in [0, 1]")


def _state_dict(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        _fail(where, value, "a dict of tensors")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            _fail(f"{where}.{k}", v, "a tensor under a text key")


def _compression(value: Any, where: str) -> None:
    if not isinstance(value, (list, tuple)):
        _fail(where, value, "a list of compression steps")
    for i, step in enumerate(value):
        if not isinstance(step, Mapping):
            _fail(f"{where}[{i}]", step, "a dict naming a compression step")
        _text(step.get("name"), f"{where}[{i}].name")
        plain_data(step, f"{where}[{i}]")


def _provenance(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        _fail(where, value, "a dict recording how the model was made")
    plain_data(value, where)
    for key in ("command", "created"):
        if value.get(key) is not None:
            _text(value[key], f"{where}.{key}", empty=True)
    for key in ("versions", "metrics"):
        if value.get(key) is not None and not isinstance(value[key], Mapping):
            _fail(f"{where}.{key}", value[key], "a dict")


def _module(value: Any, where: str) -> None:
    if not isinstance(value, nn.Module):
        _fail(where, value, "a pickled torch.nn.Module")


def _normalization(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        _fail(where, value, "a dict with mean and std")
    plain_data(value, where)


# every field of a saved checkpoint (compressor.checkpoint.Checkpoint.to_dict) and its check
CHECKPOINT_FIELDS: dict[str, Callable[[Any, str], None]] = {
    "format": _text, "format_version": lambda v, w: None,  # checked first, by Checkpoint.from_dict
    "arch": _text, "arch_kwargs": _arch_kwargs, "classes": _classes, "input_shape": lambda v, w: (
        input_shape(v, w) if v else None), "normalization": _normalization, "dataset": _dataset,
    "state_dict": _state_dict, "compression": _compression, "provenance": _provenance, "module": _module}
REQUIRED = ("arch", "arch_kwargs", "state_dict")


def check_checkpoint(d: Mapping[str, Any], source: str) -> None:
    """Check every field of a loaded checkpoint dict against the schema (unknown top-level fields must be plain
    data); one line naming the field, what it holds and what was expected."""
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise CompressorError(f"{source} is missing {', '.join(missing)}: it is not a complete compressor checkpoint")
    try:
        for key, value in d.items():
            if not isinstance(key, str):
                _fail("(top level) key", key, "text")
            if key in CHECKPOINT_FIELDS:
                if value is not None or key in REQUIRED:
                    CHECKPOINT_FIELDS[key](value, key)
            else:
                plain_data(value, key)
    except FieldError as exc:
        raise CompressorError(f"{source} is not a valid compressor checkpoint: its {exc}; the file is corrupt or was "
                              "not written by compressor, so nothing was built from it") from None
