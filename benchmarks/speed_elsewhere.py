"""Timings of the searched architectures taken on other machines: another CPU's target-search cache (the same
command with `--search-only --cache DIR` run there), matched to this run's targets by exact layer shapes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError

MAX_TARGET_BYTES = 1 << 20  # a target file is a few kB: anything larger is not one
MEASURE_KEYS = ("speedup", "low", "high")


def _fail(path: Path, what: str) -> CompressorError:
    return CompressorError(f"--timed-elsewhere {path}: {what}: give the folder of a `speed_targets.py --search-only "
                           "--cache` run")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _target(path: Path) -> dict[str, Any] | None:
    """The architecture another machine timed for one target, checked field by field: the one it chose, or for a
    target out of reach there the most pruned one it measured (None: neither)."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_TARGET_BYTES:
        raise _fail(path, "not a regular target file under 1 MiB")
    try:
        t = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(t, dict) or not _number(t.get("target")):
        raise _fail(path, "no numeric `target`")
    timed = t if t.get("ratio") is not None else t.get("limit")
    if timed is None:
        return None
    machine = t.get("machine")
    if not isinstance(timed, dict):
        raise _fail(path, "`limit` is not an object")
    shapes, measured = timed.get("shapes"), timed.get("measured")
    if not (_number(timed.get("ratio")) and isinstance(shapes, dict) and shapes and all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(d, int) for d in v)
            for k, v in shapes.items())):
        raise _fail(path, "`ratio` or `shapes` missing or of the wrong type")
    if not (isinstance(measured, dict) and measured and all(
            isinstance(b, str) and b.isdigit() and isinstance(m, dict)
            and all(m.get(k) is None and k != "speedup" or _number(m.get(k)) for k in MEASURE_KEYS)
            for b, m in measured.items())):
        raise _fail(path, "`measured` is not a speedup per batch size")
    if not (isinstance(machine, dict) and isinstance(machine.get("cpu_model"), str)
            and isinstance(machine.get("cpu_count"), int)):
        raise _fail(path, "no `machine` with `cpu_model` and `cpu_count`")
    return {"target": float(t["target"]), "ratio": float(timed["ratio"]), "shapes": shapes,
            "measured": {b: {k: m.get(k) for k in MEASURE_KEYS} for b, m in measured.items()},
            "machine": {"cpu_model": machine["cpu_model"], "cpu_count": machine["cpu_count"]}}


def load_elsewhere(folders: list[Path]) -> list[dict[str, Any]]:
    """Per folder: its CPU and the architectures it timed (chosen ones and out-of-reach limits), every file checked."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise _fail(folder, "not a folder")
        theirs = [t for p in sorted(folder.glob("target-x*.json")) if (t := _target(p)) is not None]
        if not theirs:
            raise _fail(folder, "no timed target in it")
        cpus = {(t["machine"]["cpu_model"], t["machine"]["cpu_count"]) for t in theirs}
        if len(cpus) > 1:
            raise _fail(folder, f"targets timed on {len(cpus)} different CPUs")
        out.append({"source": str(folder), "machine": theirs[0]["machine"], "searched": theirs})
    return out


def match_elsewhere(loaded: list[dict[str, Any]], targets: dict[float, dict[str, Any] | None]) -> list[dict]:
    """Per other machine: for each of this run's targets, that machine's timing of exactly its layer shapes
    (targets it never measured are left out)."""
    out = []
    for other in loaded:
        matched = {}
        for s, ours in targets.items():
            same = next((t for t in other["searched"] if ours and ours.get("shapes") == t["shapes"]), None)
            if same is not None:
                matched[str(s)] = {"their_target": same["target"], "measured": same["measured"]}
        out.append({"source": other["source"], "machine": other["machine"], "targets": matched})
    return out
