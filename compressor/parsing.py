"""Parsing of user-facing values such as ``8/255``."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import CompressorError

_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_FRACTION = re.compile(rf"^\s*({_NUMBER})\s*(?:/\s*({_NUMBER}))?\s*$")


def parse_eps(value: str | float, *, name: str = "eps", allow_zero: bool = False) -> float:
    """Parse a perturbation budget: ``0.03``, ``8/255`` or a float; must be positive and finite."""
    if isinstance(value, (int, float)):
        eps = float(value)
    else:
        m = _FRACTION.match(str(value))
        if not m:
            raise CompressorError(f"{name} '{value}' is not a number: write it like 0.031 or 8/255")
        num = float(m.group(1))
        den = float(m.group(2)) if m.group(2) else 1.0
        if den == 0:
            raise CompressorError(f"{name} '{value}' divides by zero: write it like 8/255")
        eps = num / den
    if not math.isfinite(eps):
        raise CompressorError(f"{name} '{value}' is too large to be a budget: write it like 8/255")
    if eps < 0 or (eps == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise CompressorError(f"{name} must be {bound}, got '{value}': write it like 8/255")
    return eps


def check_eps_range(eps: float, norm: str, name: str = "`eps`") -> float:
    """Refuse an L-inf budget above 1: pixels live in [0, 1], so it would allow any image at all."""
    if norm == "linf" and eps > 1:
        raise CompressorError(f"{name} {eps:g} is larger than the [0, 1] pixel range, so every image is allowed: "
                              "give it on the [0, 1] scale, e.g. 8/255 or 0.3")
    return eps


def parse_int_list(value: str, *, name: str, minimum: int | None = None) -> list[int]:
    """Parse ``'30,40'`` into ``[30, 40]``; empty items, non-integers and values below `minimum` are refused."""
    items = [v.strip() for v in str(value).split(",")]
    if not any(items):
        raise CompressorError(f"{name} is empty: give comma-separated integers, like 1,64")
    if "" in items:
        raise CompressorError(f"{name} '{value}' has an empty item: give comma-separated integers, like 1,64")
    try:
        values = [int(v) for v in items]
    except ValueError:
        raise CompressorError(f"{name} '{value}' must be comma-separated integers, like 1,64") from None
    if minimum is not None and min(values) < minimum:
        raise CompressorError(f"{name} '{value}': every value must be >= {minimum}")
    return values


def parse_float_list(value: str, *, name: str, allow_empty: bool = False) -> list[float]:
    """Parse ``'0.9,0.95'`` into ``[0.9, 0.95]``; ``''`` gives ``[]`` only with `allow_empty`; an empty item or a
    non-number is refused in one line naming `name`."""
    items = [v.strip() for v in str(value).split(",")]
    if not any(items):
        if allow_empty:
            return []
        raise CompressorError(f"{name} is empty: give comma-separated numbers, like 0.9,0.95")
    if "" in items:
        raise CompressorError(f"{name} '{value}' has an empty item: give comma-separated numbers, like 0.9,0.95")
    try:
        return [float(v) for v in items]
    except ValueError:
        raise CompressorError(f"{name} '{value}' is not a comma-separated list of numbers, like 0.9,0.95") from None


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds (the data splits) stop here; torch's go further


def check_seed(seed: int) -> int:
    """A seed every random generator the toolkit uses accepts (0 .. 2**32-1), or one line."""
    if not 0 <= seed <= SEED_MAX:
        raise CompressorError(f"`seed` must be in 0..{SEED_MAX}, got {seed}")
    return seed


def json_depth(text: str) -> int:
    """The deepest nesting of objects and lists in JSON `text` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(text: str, what: str, max_depth: int, example: str) -> Any:
    """Parse JSON `text` whose nesting is at most `max_depth` (measured before parsing: deeper input is refused
    without recursing); `what` names it and `example` shows a good value in the one-line error."""
    depth = json_depth(text)
    if depth > max_depth:
        raise CompressorError(f"{what} nests {depth} levels deep, more than {max_depth}: write a flat JSON object, "
                              f"e.g. {example}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CompressorError(f"{what} is not valid JSON ({exc.msg} at character {exc.pos}): write a JSON object, "
                              f"e.g. {example}") from None
