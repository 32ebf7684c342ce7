"""The `compressor` command line: a thin layer over the library's public API.

Commands are imported when they run (or show their own help), never all at start: ``compressor --help`` lists
them from their docstrings, read from source, so it imports neither torch nor the packages layered on top.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import logging
import sys
from difflib import get_close_matches
from importlib import metadata
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info

try:  # typer >= 0.29 carries its own click
    from typer._click.exceptions import ClickException, UsageError
    from typer.exceptions import Abort
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click.exceptions import Abort, ClickException, UsageError

from ..errors import CompressorError
from ..registry import installed_entry_points
from .invocation import INVOCATION, flag_for

COMMANDS_GROUP = "compressor.commands"  # entry name: the command; value: its function (prune, export, bench, demo)
# the core's own commands: name -> (module of compressor.cli, function); they register on `app` when imported
CORE_COMMANDS = {"eval": ("evaluate", "eval_cmd"), "inspect": ("inspect", "inspect_cmd"),
                 "list": ("listing", "list_cmd"), "train": ("train", "train_cmd")}
log = logging.getLogger(__name__)
RESUMABLE = {"train", "prune"}  # commands with --resume (the Ctrl-C message points to it)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """The commands installed packages contribute, by name (the core's own names win; never a distribution in the
    working directory)."""
    return {ep.name: ep for ep in installed_entry_points(COMMANDS_GROUP) if ep.name not in CORE_COMMANDS}


def _source_of(module: str) -> Path | None:
    """The source file of `module`, found without importing it or its packages (None when not a plain file)."""
    parts = module.split(".")
    spec = importlib.util.find_spec(parts[0])  # a top-level name: found, not imported
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    if not parts[1:]:
        return Path(spec.origin) if spec is not None and spec.origin else None
    for folder in where:
        base = Path(folder, *parts[1:])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
    return None


def _summary(module: str, function: str) -> str:
    """The first paragraph of `function`'s docstring in `module`'s source, on one line ('' when unreadable)."""
    path = _source_of(module)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, SyntaxError, ValueError):
        tree = None
    for node in tree.body if tree is not None else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return " ".join((ast.get_docstring(node) or "").strip().split("\n\n")[0].split())
    return ""


def _load(name: str) -> Any | None:
    """Import command `name`'s module and build its click command (None for an unknown or broken command)."""
    if name in CORE_COMMANDS:
        importlib.import_module(f"{__name__}.{CORE_COMMANDS[name][0]}")  # its @app.command registers it
    else:
        ep = _entry_points().get(name)
        if ep is None:
            return None
        dist = getattr(ep, "dist", None)
        try:
            fn = ep.load()
        except Exception as exc:  # a broken third-party command must not break the others
            if dist is not None and dist.name == "compressor":
                raise
            log.warning("could not load command '%s' (%s): %s", ep.name, ep.value, exc)
            return None
        app.command(name, cls=getattr(fn, "command_class", None))(fn)  # a command may bring its click class
    info = next(c for c in app.registered_commands if c.name == name)
    return get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                 rich_markup_mode=app.rich_markup_mode)


class LazyGroup(TyperGroup):
    """The command group: lists every command, imports one only when it is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*CORE_COMMANDS, *_entry_points(), *self.commands})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            cmd = _load(cmd_name)
            if cmd is None:
                return None
            self.commands[cmd_name] = cmd
        return self.commands[cmd_name]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:  # typer suggests among loaded commands only: suggest among all
            close = get_close_matches(args[0], self.list_commands(ctx)) if args and "Did you mean" not in exc.message \
                else []
            if close:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(map(repr, close))}?"
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        eps = _entry_points()
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(formatter.width - 6 - len(name))))
            elif name in CORE_COMMANDS:
                rows.append((name, _summary(f"{__name__}.{CORE_COMMANDS[name][0]}", CORE_COMMANDS[name][1])))
            else:
                rows.append((name, _summary(eps[name].module, eps[name].attr)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="compressor",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Make neural networks compact and adversarially robust, and turn them into deployable engines."""


def _fail(message: str, option: str | None = None, code: int = 2) -> None:
    """Print one `error:` line (and, under --json, the error as JSON on stdout) and exit with `code`."""
    print(f"error: {message}", file=sys.stderr)
    options = INVOCATION[:INVOCATION.index("--")] if "--" in INVOCATION else INVOCATION
    if "--json" in options:  # a script reading --json output gets the error as JSON where the report would have been
        print(json.dumps({"error": message, "option": option}))
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    INVOCATION[:] = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in INVOCATION if not a.startswith("-")), "")
    try:
        code = app(args=argv, prog_name="compressor", standalone_mode=False)
    except CompressorError as exc:
        _fail(exc.render(flag_for), flag_for(exc.field) if exc.field else None)
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `compressor` or a group alone: its help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        # a bad flag or value (click's usage error is four lines): one line naming it, and where to read more
        param = getattr(exc, "param", None)
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or "compressor"
        message = exc.format_message()
        _fail(f"{message[:-1] if message.endswith('.') else message}; see `{where} --help`",
              param.opts[0] if getattr(param, "opts", None) else None, exc.exit_code)
    except Abort:
        code = 130
    if code == 130:  # typer turns Ctrl-C into exit code 130
        print("interrupted: " + ("the run continues from its last finished epoch when rerun with --resume"
                                 if command in RESUMABLE else "outputs are only written when complete, so none is "
                                 "half-written"), file=sys.stderr)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
