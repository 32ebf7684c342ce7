"""Settings dataclasses given whole or as keyword options: how an API function groups what travels together (a
PGD budget, a benchmark's timing) and still takes the keywords its callers spell out one by one."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .errors import CompressorError


def field_names(config: Any) -> set[str]:
    """The field names of a settings dataclass (class or instance)."""
    return {f.name for f in dataclasses.fields(config)}


def with_options(what: str, options: Mapping[str, Any], *configs: Any) -> list[Any]:
    """Each of `configs` (a settings dataclass, or its class to build) with the keyword `options` naming its fields
    set; an option that names no field, or a class's required field left out, is a one-line error naming `what`."""
    known = set().union(*(field_names(c) for c in configs))
    unknown = sorted(set(options) - known)
    if unknown:
        raise CompressorError(f"'{unknown[0]}' is not an option of {what}: it takes {', '.join(sorted(known))}",
                              field=unknown[0])
    out = []
    for config in configs:
        own = {k: v for k, v in options.items() if k in field_names(config)}
        if isinstance(config, type):
            missing = [f.name for f in dataclasses.fields(config) if f.name not in own
                       and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            if missing:
                raise CompressorError(f"{what} needs `{missing[0]}`", field=missing[0])
            out.append(config(**own))
        else:
            out.append(dataclasses.replace(config, **own) if own else config)
    return out
