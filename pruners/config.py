"""Typed pruner configurations: one dataclass per method; CLI options and help are generated from the fields."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from compressor.errors import CompressorError

ALLOCATIONS = ("layer", "global")
SCHEDULES = ("oneshot", "iterative", "cubic")


def option(default: Any = None, help: str = "", *, cli: str | None = None, choices: tuple[str, ...] = (),
           parse: Callable[[str], Any] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its CLI flag (default ``--field-name``), help text, choices and string parser."""
    meta = {"help": help, "cli": cli, "choices": choices, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def redefault(base: type, name: str, default: Any) -> Any:
    """Field `name` of config `base` with another default (same flag, help and choices), for a subclass."""
    f = {f.name: f for f in dataclasses.fields(base)}[name]
    return field(default=default, metadata=f.metadata)


@dataclass(frozen=True)
class ConfigField:
    """What the CLI needs to know about one config field."""

    name: str  # attribute name
    flag: str  # --flag
    type: type  # float, int, str or bool (what the command line gives)
    help: str
    default: Any
    choices: tuple[str, ...]
    parse: Callable[[str], Any] | None


def _cli_type(annotation: Any) -> type:
    """float, int, bool or str from an annotation: a string such as ``'float | None'`` (a module with postponed
    annotations), or the type itself (``float``, ``float | None``, ``Optional[float]``)."""
    if isinstance(annotation, str):
        first = annotation.split("|")[0].strip()
    else:
        args = typing.get_args(annotation)
        first = getattr(args[0] if args else annotation, "__name__", "")
    return {"bool": bool, "float": float, "int": int}.get(first, str)


def config_fields(cls: type) -> list[ConfigField]:
    """The fields of a config dataclass as CLI options (dict-valued fields are given as strings and parsed)."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        flag = "--" + (meta.get("cli") or f.name.replace("_", "-"))
        typ = str if meta.get("parse") else _cli_type(f.type)
        out.append(ConfigField(f.name, flag, typ, meta.get("help", ""), default, tuple(meta.get("choices") or ()),
                               meta.get("parse")))
    return out


# ----------------------------------------------------------------- parsing and checks
def parse_pattern(text: str) -> tuple[int, int] | None:
    """``unstructured`` -> None; ``N:M`` with 1 <= N < M -> (N, M); anything else is a one-line error."""
    t = str(text).strip().lower()
    if t in ("unstructured", "none", ""):
        return None
    parts = t.split(":")
    try:
        n, m = (int(p) for p in parts)
    except ValueError:
        n = m = -1
    if len(parts) != 2 or not 1 <= n < m:
        raise CompressorError(f"`pattern` '{text}' is not N:M with 1 <= N < M (at most N nonzeros in every M "
                              "consecutive weights): write e.g. 2:4, or unstructured")
    return n, m


def check_sparsity(value: float, name: str = "`sparsity`") -> float:
    """A fraction of weights to remove: in [0, 1)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1):
        raise CompressorError(f"{name} must be in [0, 1) (the fraction of weights removed), got {value}: "
                              "e.g. `sparsity` 0.95", field=name.split("`")[1] if "`" in name else None)
    return float(value)


def parse_rules(text: str | dict) -> dict[str, float]:
    """``'classifier.*=0.5,features.0=0'`` -> {glob: sparsity}; a dict is checked and returned."""
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            glob, sep, value = part.rpartition("=")
            if not sep or not glob.strip():
                raise CompressorError(f"`layer_sparsity` '{part}' is not GLOB=SPARSITY: write e.g. 'classifier.*=0.5'")
            try:
                items.append((glob.strip(), float(value)))
            except ValueError:
                raise CompressorError(f"`layer_sparsity` '{part}': '{value}' is not a number: write e.g. "
                                      "'classifier.*=0.5'") from None
    return {str(g): check_sparsity(v, f"`layer_sparsity` '{g}'") for g, v in items}


def match_rules(names: list[str], rules: dict[str, float]) -> dict[str, float]:
    """Layer name -> sparsity from the first matching glob; a glob that matches no layer is an error."""
    out: dict[str, float] = {}
    for glob, value in rules.items():
        hits = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        if not hits:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise CompressorError(f"`layer_sparsity` glob '{glob}' matches no prunable layer: the layers are {shown}")
        for n in hits:
            out.setdefault(n, value)
    return out


@dataclass
class PrunerConfig:
    """Settings every pruner shares: how much (sparsity, allocation, rules), which shape (pattern) and when."""

    sparsity: float | None = option(None, "Fraction of prunable weights to remove, in [0, 1) (default with an "
                                          "N:M pattern: 1 - N/M).")
    allocation: str = option("layer", "layer: every layer keeps the same fraction; global: one threshold across "
                                      "layers.", choices=ALLOCATIONS)
    layer_sparsity: dict = option(help="Per-layer sparsity by glob, overriding the allocation, e.g. "
                                       "'classifier.*=0.5,features.0=0' (0 leaves a layer dense).",
                                  parse=parse_rules, factory=dict)
    pattern: str = option("unstructured", "unstructured, or N:M: at most N nonzeros in every M consecutive weights "
                                          "along the input dimension (2:4 for sparse tensor cores).")
    schedule: str = option("oneshot", "When masks reach the target in the prune phase: oneshot (at its start), "
                                      "iterative (geometric rounds) or cubic (Zhu & Gupta, every epoch).",
                           choices=SCHEDULES)
    rounds: int = option(2, "Rounds of the iterative schedule (at most --epochs-prune, or at most the mask updates "
                            "--update-every leaves).")
    update_every: int = option(0, "Optimiser steps between mask updates in the prune phase (0: at epoch boundaries). "
                                  "The iterative and cubic schedules then follow the step progress, every update "
                                  "rescores the current weights, and the last one reaches the target.")
    cond_reg: float = option(0.0, "Weight of ARLST's condition regulariser h(A) on separable (Kronecker) layers, "
                                   "summed over layers (0: off; set by --transform separable-linear,reg=W too).")
    cond_nu: float = option(1e-3, "nu inside h(A)'s log(nu + det(A^T A)/k), 0 < nu << 1.")

    def validate(self) -> None:
        """Reject impossible settings with one clear line."""
        if self.sparsity is not None:
            self.sparsity = check_sparsity(self.sparsity)
        if self.allocation not in ALLOCATIONS:
            raise CompressorError(f"unknown `allocation` '{self.allocation}': choose layer or global")
        if self.schedule not in SCHEDULES:
            raise CompressorError(f"unknown `schedule` '{self.schedule}': choose one of {', '.join(SCHEDULES)}")
        if self.rounds < 1:
            raise CompressorError(f"`rounds` must be at least 1, got {self.rounds}")
        if not isinstance(self.update_every, int) or isinstance(self.update_every, bool) or self.update_every < 0:
            raise CompressorError(f"`update_every` must be a whole number of steps >= 0 (0: at epoch boundaries), got "
                                  f"{self.update_every}", field="update_every")
        if not (math.isfinite(self.cond_reg) and self.cond_reg >= 0) or not 0 < self.cond_nu < 1:
            raise CompressorError(f"`cond_reg` must be >= 0 and `cond_nu` in (0, 1) (ARLST's 0 < nu << 1), got "
                                  f"{self.cond_reg} and {self.cond_nu}")
        nm = parse_pattern(self.pattern)
        self.pattern = "unstructured" if nm is None else f"{nm[0]}:{nm[1]}"
        self.layer_sparsity = parse_rules(self.layer_sparsity or {})
        if self.sparsity is None:  # `pruners.job.decide_sparsity` fills it in from an N:M pattern
            raise CompressorError("no `sparsity` given: pass e.g. `sparsity` 0.95 (or an N:M `pattern` alone)")

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an N:M pattern, None when unstructured."""
        return parse_pattern(self.pattern)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for reports and checkpoints."""
        return dataclasses.asdict(self)
