"""`nm`: N:M semi-structured sparsity (2:4 for sparse tensor cores), as the pattern of the paired pruner's masks;
alone (``--method none``) the largest magnitudes within the pattern are kept."""

from __future__ import annotations

from typing import Any

from compressor.errors import CompressorError

from .. import register_transform
from ..config import parse_pattern
from .base import SpecOptions, Transform


@register_transform()
class NM(Transform):
    """N:M semi-structured sparsity (default 2:4) on every prunable layer, alone or as a pruner's pattern."""

    name = "nm"
    stage = 3

    def __init__(self, n: int = 2, m: int = 4):
        self.n, self.m = n, m

    @classmethod
    def from_spec(cls, arg: str | None, options: SpecOptions) -> "NM":
        nm = parse_pattern(arg or "2:4")
        if nm is None:
            raise CompressorError("`transforms` nm needs N:M, e.g. nm:2:4 (or nm alone for 2:4)")
        options.finish(())
        return cls(*nm)

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}"

    def pruner_options(self, method: str, options: dict[str, Any]) -> dict[str, Any]:
        given = options.get("pattern")
        if given not in (None, "unstructured") and parse_pattern(given) != (self.n, self.m):
            raise CompressorError(f"`pattern` {given} and `transforms` nm:{self.pattern} disagree: give one of them")
        return {**options, "pattern": self.pattern}

    def apply(self, model, context) -> dict[str, Any]:
        # the masks are the pruner's: this entry only records the pairing (the architecture is unchanged)
        return {"name": self.name, "kind": "transform", "structural": False, "pattern": self.pattern}
