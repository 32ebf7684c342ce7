"""JSON-safe output and rich tables for reports."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text


def jsonable(obj: Any) -> Any:
    """Replace what JSON cannot hold: non-finite floats become strings ('inf', 'nan'), tuples lists, typed results
    (anything with `to_dict`) their dicts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return obj


def to_json(obj: Any) -> str:
    """Pretty, strict JSON."""
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


def fmt(value: Any, digits: int = 4) -> str:
    """A compact cell: percentages stay as fractions, big numbers get separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.{digits}f}"
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Group:
    """A bold title line over a rich table with formatted cells."""
    t = Table()
    for c in columns:
        t.add_column(c, justify="left" if c in ("name", "layer", "attack", "type", "description", "key") else "right")
    for r in rows:
        t.add_row(*(fmt(v) for v in r))
    return Group(Text(title, style="bold"), t)


def stdout_console() -> Console:
    """The console for results (stdout); progress and logs go to stderr. Wide when piped, so tables stay whole."""
    console = Console(soft_wrap=False)
    return console if console.is_terminal else Console(soft_wrap=False, width=200)


def normalization_text(norm: dict | None) -> str:
    """``mean [..] std [..] (the file)`` or the reason there is none, for a report line."""
    if not norm or norm.get("mean") is None:
        return (norm or {}).get("source", "unknown")
    return f"mean {norm['mean']} std {norm['std']} ({norm['source']})"
