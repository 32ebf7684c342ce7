"""Any torchvision classification model as ``tv:<name>`` (randomly initialised, never downloaded)."""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable, Sequence

from torch import nn

from ..errors import CompressorError, UnknownNameError
from ..registry import MODELS
from .external import Normalized

PREFIX = "tv:"


class TorchvisionModel(Normalized):
    """A torchvision model behind the zoo's input normalisation: children `normalize`, then `model`."""


@functools.lru_cache(maxsize=1)
def torchvision_classifiers() -> tuple[str, ...]:
    """Names of torchvision's classification models (those of ``torchvision.models`` itself)."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def build_torchvision_model(tv_name: str, num_classes: int = 1000, in_chans: int = 3,
                            mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                            **kwargs: Any) -> TorchvisionModel:
    """Build torchvision's `tv_name` with random weights for `num_classes` classes."""
    import torchvision

    if in_chans != 3:
        raise CompressorError(f"torchvision model '{PREFIX}{tv_name}' takes 3 input channels, not {in_chans}: "
                              "use a 3-channel dataset or a zoo model such as cnn-small")
    if kwargs.get("weights") is not None or kwargs.get("pretrained"):
        raise CompressorError(f"pretrained weights are not downloaded for '{PREFIX}{tv_name}': "
                              "build it without weights and load a checkpoint instead")
    kwargs.pop("weights", None)
    kwargs.pop("pretrained", None)
    model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
    return TorchvisionModel(model, mean if mean is not None else [0.0] * 3, std if std is not None else [1.0] * 3)


def resolve(name: str) -> Callable[..., nn.Module] | None:
    """A factory for ``tv:<name>``; None for other names; unknown torchvision names raise."""
    if not name.startswith(PREFIX):
        return None
    tv_name = name[len(PREFIX):]
    known = torchvision_classifiers()
    if tv_name not in known:
        close = difflib.get_close_matches(tv_name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(PREFIX + c) for c in close)}? " if close else ""
        raise UnknownNameError(f"unknown torchvision model '{name}': {hint}"
                               "see torchvision.models.list_models(module=torchvision.models)")
    factory = functools.partial(build_torchvision_model, tv_name)
    factory.__doc__ = f"torchvision {tv_name} (random init)."
    return factory


MODELS.add_resolver(resolve)
