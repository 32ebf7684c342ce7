"""The benchmarks stand on public APIs: no file under benchmarks/ imports or reads a name starting with ``_`` from
the library (compressor, pruners, exporters) or from another benchmark script; and none grows past `MAX_LINES`
(a script that mixes CLI, grid, statistics, cache and report is split into modules)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
LIBRARY = ("compressor", "pruners", "exporters")
# benchmark file -> why it may still read another script's private names, and the follow-up that removes it
ALLOWED: dict[str, str] = {}
MAX_LINES = 400


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(source: str, siblings: set[str]) -> list[str]:
    """``line: what`` for every private name of the library or of a sibling script (module names in `siblings`) that
    `source` imports, or reads as an attribute of a module it imported."""
    tree = ast.parse(source)
    watched = set(LIBRARY) | siblings
    modules: dict[str, str] = {}  # local name -> the watched module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module.split(".")[0] in watched:
            for alias in node.names:
                if any(_private(p) for p in [*node.module.split("."), alias.name]):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in watched:
                    continue
                if any(_private(p) for p in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
                modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda line: int(line.split(":")[0]))


def test_benchmarks_use_only_public_names():
    siblings = {p.stem for p in BENCHMARKS.glob("*.py")}
    offenders = []
    for path in sorted(BENCHMARKS.rglob("*.py")):
        if path.name in ALLOWED:
            continue
        offenders += [f"{path.relative_to(REPO)}:{use}" for use in private_uses(path.read_text(), siblings)]
    assert not offenders, "\n".join(offenders)


def test_benchmark_files_stay_small():
    long = {str(p.relative_to(REPO)): n for p in sorted(BENCHMARKS.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these into modules of at most {MAX_LINES} lines: {long}"


def test_the_check_finds_private_names():
    source = textwrap.dedent("""
        import attack_throughput as at
        from compressor.errors import CompressorError
        from compressor.registry import _first_line
        import exporters.bench as eb

        def f():
            from pruners._hidden import thing
            at._stats([1.0], 1)
            eb.run_bench
            at.__doc__
            return eb.PeakMemory._sample
        """)
    found = private_uses(source, {"attack_throughput"})
    assert [f.split(": ", 1)[1] for f in found] == [
        "from compressor.registry import _first_line", "from pruners._hidden import thing", "at._stats",
        "eb.PeakMemory._sample"]


def test_allow_list_names_real_files():
    assert all((BENCHMARKS / name).is_file() for name in ALLOWED)
