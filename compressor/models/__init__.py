"""Model zoo: every model takes [0, 1] pixels and starts with its input normalisation."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import nn

from ..budget import check_allocation
from ..errors import CompressorError
from ..metadata import check_arch_kwargs
from ..registry import MODELS
from ..sanity import building_on_meta, declared_bytes
from .external import Normalized, build_imported, is_import_path, parse_arch_kwargs, user_name
from .normalize import Normalize, normalization_of

register_model = MODELS.register


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names matching a glob `pattern` (``tv:<name>`` models are not listed)."""
    return MODELS.names(pattern)


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build the zoo model `name` (``tv:``/``timm:`` names too; 10 classes and 3 channels unless given; mean/std
    default to 0/1 per channel: no normalisation), or call the import path ``module:callable`` with
    num_classes/in_chans only when given and a `Normalize` in front only with mean/std."""
    if is_import_path(name):
        given = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
        return build_imported(name, {**given, **kwargs}, mean, std)
    num_classes = 10 if num_classes is None else num_classes
    in_chans = 3 if in_chans is None else in_chans
    factory: Callable[..., nn.Module] = MODELS.get(name)
    mean = list(mean) if mean is not None else [0.0] * in_chans
    std = list(std) if std is not None else [1.0] * in_chans
    if len(mean) != in_chans or len(std) != in_chans:
        raise CompressorError(f"normalisation has {len(mean)} channels but the model takes {in_chans}: "
                              "pass one mean and std per input channel")
    check_arch_kwargs({"num_classes": num_classes, "in_chans": in_chans, **kwargs}, f"model '{name}'")

    def build() -> nn.Module:
        try:
            return factory(num_classes=num_classes, in_chans=in_chans, mean=mean, std=std, **kwargs)
        except TypeError as exc:
            raise CompressorError(f"bad arguments for model '{name}': {exc}") from None

    if not building_on_meta():  # measured first on the meta device: declared widths never allocate beyond the budget
        check_allocation(declared_bytes(build) or 0, f"model '{name}' with these arguments",
                         "pass smaller widths or fewer classes")
    return build()


# Built-in models register themselves on import.
from . import cnn, resnet, vgg, vit, wide_resnet, torchvision_models, timm_models  # noqa: E402,F401

__all__ = ["Normalize", "Normalized", "create_model", "is_import_path", "list_models", "normalization_of", "user_name",
           "parse_arch_kwargs", "register_model"]
