"""Structural transforms paired with any pruner: `channels` (Torch-Pruning), `separable-linear` (Kronecker
factors, ARLST) and `nm` (N:M patterns); see `base` for the order in which they apply."""

from .base import (Transform, TransformContext, apply_transforms, check_recorded, parse_transform,  # noqa: F401
                   parse_transforms)
from . import channels, nm, separable  # noqa: E402,F401  (register the built-ins)
from .kronecker import KroneckerFactor, KroneckerLinear, condition_regularizer, nearest_kronecker  # noqa: F401
from .separable import ConditionRegularizer  # noqa: E402,F401

__all__ = ["ConditionRegularizer", "KroneckerFactor", "KroneckerLinear", "Transform", "TransformContext", "apply_transforms", "check_recorded",
           "condition_regularizer", "nearest_kronecker", "parse_transform", "parse_transforms"]
