"""No library or benchmark function takes more than 10 parameters: settings that travel together go in a small
frozen dataclass (`TrainConfig`, `PrunerConfig`, `AttackBudget`, `Timing`, ...). Typer command functions are the
exception: each option of a command is a parameter."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("compressor", "pruners", "exporters", "benchmarks")
MAX_PARAMETERS = 10

Function = ast.FunctionDef | ast.AsyncFunctionDef


def parameter_count(fn: Function) -> int:
    """Parameters of `fn`, ``*args`` and ``**kwargs`` one each, a leading ``self``/``cls`` not counted."""
    args = fn.args
    named = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    count = len(named) + (args.vararg is not None) + (args.kwarg is not None)
    return count - 1 if named[:1] in (["self"], ["cls"]) else count


def is_cli_module(rel: str) -> bool:
    """A command-line module: ``cli.py`` or a module of a ``cli`` package."""
    parts = Path(rel).with_suffix("").parts
    return "cli" in parts


def is_command(fn: Function, rel: str, top_level: bool) -> bool:
    """A Typer command function: at the top of a command-line module, named ``*_cmd`` or decorated by
    ``app.command(...)``."""
    decorated = any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
                    for d in fn.decorator_list)
    return top_level and is_cli_module(rel) and (fn.name.endswith("_cmd") or decorated)


def functions(source: str, rel: str) -> list[tuple[Function, bool]]:
    """Every function and method of `source`, with whether it is a Typer command."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    return [(node, is_command(node, rel, id(node) in top)) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def offenders(source: str, rel: str) -> list[tuple[str, int, str, int]]:
    """(path, line, name, count) of each function of `source` over the limit that is not a Typer command."""
    return sorted((rel, fn.lineno, fn.name, n) for fn, command in functions(source, rel)
                  if not command and (n := parameter_count(fn)) > MAX_PARAMETERS)


def scan() -> list[tuple[str, int, str, int]]:
    found = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            found += offenders(path.read_text(), rel)
    return found


def test_no_function_takes_more_than_ten_parameters():
    found = [f"{rel}:{line} {name} ({n})" for rel, line, name, n in scan()]
    assert not found, "more than 10 parameters (group settings in a dataclass):\n" + "\n".join(found)


def test_every_registered_command_is_recognised():
    """The commands the CLI loads from entry points are the functions the rule exempts."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    for target in entry_points["compressor.commands"].values():
        module, name = target.split(":")
        rel = module.replace(".", "/") + ".py"
        if not (REPO / rel).is_file():
            rel = module.replace(".", "/") + "/__init__.py"
        commands = {fn.name for fn, command in functions((REPO / rel).read_text(), rel) if command}
        assert name in commands, f"{target} is not recognised as a Typer command"
    core = {fn.name for path in (REPO / "compressor" / "cli").glob("*.py")
            for fn, command in functions(path.read_text(), path.relative_to(REPO).as_posix()) if command}
    assert {"train_cmd", "eval_cmd", "inspect_cmd", "list_cmd"} <= core


def test_the_check_counts_and_exempts():
    source = textwrap.dedent("""
        import typer
        app = typer.Typer()

        def eleven(a, b, c, d, e, f, g, h, i, *args, **kwargs): ...

        def ten(a, b, c, d, e, f, g, h, i, j): ...

        class K:
            def method(self, a, b, c, d, e, f, g, h, i, j): ...

            @classmethod
            def build(cls, a, b, c, d, e, f, g, h, i, *, j, k): ...

        @app.command("go")
        def go(a, b, c, d, e, f, g, h, i, j, k): ...

        def many_cmd(a, b, c, d, e, f, g, h, i, j, k): ...

        def outer():
            def inner_cmd(a, b, c, d, e, f, g, h, i, j, k): ...
        """)
    assert [(name, n) for _, _, name, n in offenders(source, "pkg/core.py")] == [
        ("eleven", 11), ("build", 11), ("go", 11), ("many_cmd", 11), ("inner_cmd", 11)]
    assert [(name, n) for _, _, name, n in offenders(source, "pkg/cli/run.py")] == [
        ("eleven", 11), ("build", 11), ("inner_cmd", 11)]
    assert [name for _, _, name, _ in offenders(source, "pkg/cli.py")] == ["eleven", "build", "inner_cmd"]
