"""Robustness-aware pruners and structural transforms; each registers in `compressor.registry`.

Third-party pruners register through the ``compressor.pruners`` entry-point group and transforms
through ``compressor.transforms``.
"""

from compressor.registry import PRUNERS, TRANSFORMS

register_pruner = PRUNERS.register
register_transform = TRANSFORMS.register

__all__ = ["PRUNERS", "TRANSFORMS", "register_pruner", "register_transform"]
