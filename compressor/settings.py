"""Settings dataclasses given whole or as keyword options: how an API function groups what travels together (a
PGD budget, a benchmark's timing, a job's parts) and still takes the keywords its callers spell out one by one.

`with_options` sets keywords over a given setting (a budget and an override of its eps); `gather`/`assemble`/
`job_from` build a job's parts from keywords, a part given whole or by its fields but not both."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .errors import CompressorError


def init_fields(cls: Any) -> set[str]:
    """The names a dataclass's constructor takes (of the class or an instance)."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def gather(caller: str, fields: dict[str, Any], parts: dict[str, tuple[type, Any]]) -> dict[str, Any]:
    """Keyword `fields` sorted into `parts` (name -> (dataclass, the part given whole, or None)): a part not given
    whole is built from the fields that are its field names. A keyword no part takes, or a part given whole and by
    its fields, is a TypeError naming it, as a signature's would be."""
    left = dict(fields)
    out = {}
    for name, (cls, whole) in parts.items():
        picked = {k: left.pop(k) for k in list(left) if k in init_fields(cls)}
        if whole is not None and picked:
            raise TypeError(f"{caller}() got `{name}` and its field '{next(iter(picked))}': give one of them")
        out[name] = whole if whole is not None else cls(**picked)
    if left:
        raise TypeError(f"{caller}() got an unexpected keyword argument '{next(iter(left))}'")
    return out


def assemble(cls: type, caller: str, fields: dict[str, Any]) -> Any:
    """Job `cls` from flat keywords: its own fields, and the fields of each part in ``cls.PARTS`` (part name ->
    dataclass), or a part given whole by its name."""
    parts: dict[str, type] = getattr(cls, "PARTS", {})
    own = init_fields(cls) - set(parts)
    rest = {k: v for k, v in fields.items() if k not in own and k not in parts}
    built = gather(caller, rest, {n: (c, fields.get(n)) for n, c in parts.items()})
    return cls(**{k: v for k, v in fields.items() if k in own}, **built)


def job_from(cls: type, caller: str, job: Any, positional: dict[str, Any], fields: dict[str, Any]) -> Any:
    """`job` when it is a `cls` (then nothing else may be given), else the `cls` assembled from the old positional
    arguments (their field names -> values; None: not given) and the keyword `fields`."""
    given = {k: v for k, v in positional.items() if v is not None}
    if isinstance(job, cls):
        extra = [k for k, v in given.items() if v is not job] + list(fields)
        if extra:
            raise TypeError(f"{caller}() takes a {cls.__name__} or its fields, not both (got '{extra[0]}' too)")
        return job
    for name in set(given) & set(fields):
        raise TypeError(f"{caller}() got multiple values for argument '{name}'")
    return assemble(cls, caller, {**given, **fields})


def with_options(what: str, options: Mapping[str, Any], *configs: Any) -> list[Any]:
    """Each of `configs` (a settings dataclass, or its class to build) with the keyword `options` naming its fields
    set; an option that names no field, or a class's required field left out, is a one-line error naming `what`."""
    known = set().union(*(init_fields(c) for c in configs))
    unknown = sorted(set(options) - known)
    if unknown:
        raise CompressorError(f"'{unknown[0]}' is not an option of {what}: it takes {', '.join(sorted(known))}",
                              field=unknown[0])
    out = []
    for config in configs:
        own = {k: v for k, v in options.items() if k in init_fields(config)}
        if isinstance(config, type):
            missing = [f.name for f in dataclasses.fields(config) if f.name not in own
                       and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            if missing:
                raise CompressorError(f"{what} needs `{missing[0]}`", field=missing[0])
            out.append(config(**own))
        else:
            out.append(dataclasses.replace(config, **own) if own else config)
    return out
