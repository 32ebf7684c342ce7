"""Any timm model as ``timm:<name>`` (randomly initialised, never downloaded; timm is the optional ``timm`` extra)."""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable, Sequence

from torch import nn

from ..errors import CompressorError, UnknownNameError
from ..registry import MODELS
from .external import Normalized

PREFIX = "timm:"


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise CompressorError("timm models need timm, which is not installed: pip install 'compressor[timm]'") from None
    return timm


def build_timm_model(timm_name: str, num_classes: int = 1000, in_chans: int = 3,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     **kwargs: Any) -> Normalized:
    """timm's `timm_name` with random weights for `num_classes` classes, behind the zoo's input normalisation."""
    timm = _timm()
    if kwargs.pop("pretrained", False) or kwargs.get("pretrained_cfg_overlay"):
        raise CompressorError(f"pretrained weights are not downloaded for '{PREFIX}{timm_name}': build it without "
                              "them and load your weight file instead")
    try:
        model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise CompressorError(f"bad arguments for timm model '{timm_name}': {exc}") from None
    return Normalized(model, mean if mean is not None else [0.0] * in_chans,
                      std if std is not None else [1.0] * in_chans)


def resolve(name: str) -> Callable[..., nn.Module] | None:
    """A factory for ``timm:<name>``; None for other names; unknown timm names raise."""
    if not name.startswith(PREFIX):
        return None
    timm_name = name[len(PREFIX):]
    known = _timm().list_models()
    if timm_name not in known:
        close = difflib.get_close_matches(timm_name, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(PREFIX + c) for c in close)}? " if close else ""
        raise UnknownNameError(f"unknown timm model '{name}': {hint}see timm.list_models()")
    factory = functools.partial(build_timm_model, timm_name)
    factory.__doc__ = f"timm {timm_name} (random init)."
    return factory


MODELS.add_resolver(resolve)
