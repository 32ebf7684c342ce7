"""Model zoo: every model takes [0, 1] pixels and starts with its input normalisation."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import nn

from ..errors import CompressorError
from ..registry import MODELS
from .normalize import Normalize

register_model = MODELS.register


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names matching a glob `pattern` (``tv:<name>`` models are not listed)."""
    return MODELS.names(pattern)


def create_model(name: str, num_classes: int = 10, in_chans: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build the zoo model `name`; mean/std default to 0/1 per channel (no normalisation)."""
    factory: Callable[..., nn.Module] = MODELS.get(name)
    mean = list(mean) if mean is not None else [0.0] * in_chans
    std = list(std) if std is not None else [1.0] * in_chans
    if len(mean) != in_chans or len(std) != in_chans:
        raise CompressorError(f"normalisation has {len(mean)} channels but the model takes {in_chans}: "
                              "pass one mean and std per input channel")
    try:
        return factory(num_classes=num_classes, in_chans=in_chans, mean=mean, std=std, **kwargs)
    except TypeError as exc:
        raise CompressorError(f"bad arguments for model '{name}': {exc}") from None


# Built-in models register themselves on import.
from . import cnn, resnet, vgg, vit, wide_resnet, torchvision_models  # noqa: E402,F401

__all__ = ["Normalize", "create_model", "list_models", "register_model"]
