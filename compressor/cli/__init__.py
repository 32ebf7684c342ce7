"""The `compressor` command line: a thin layer over the library's public API."""

from __future__ import annotations

import json
import logging
import sys
from importlib import metadata

import typer

from ..errors import CompressorError
from .options import INVOCATION, flag_for

app = typer.Typer(
    name="compressor",
    help="Make neural networks compact and adversarially robust, and turn them into deployable engines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

from . import evaluate, inspect, listing, train  # noqa: E402,F401  (the core's commands register on import)

COMMANDS_GROUP = "compressor.commands"  # entry name: the command; value: its function (prune, export, bench, demo)
log = logging.getLogger(__name__)


def load_commands() -> None:
    """Add the commands that installed packages contribute (``compressor.commands`` entry points), once.

    The built-in prune (pruners), export, bench and demo (exporters) arrive this way, so the core never imports
    the packages layered on top of it. Commands are listed by name, as before.
    """
    known = {c.name for c in app.registered_commands}
    for ep in metadata.entry_points(group=COMMANDS_GROUP):
        if ep.name in known:
            continue
        dist = getattr(ep, "dist", None)
        try:
            fn = ep.load()
        except Exception as exc:  # a broken third-party command must not break the others
            if dist is not None and dist.name == "compressor":
                raise
            log.warning("could not load command '%s' (%s): %s", ep.name, ep.value, exc)
            continue
        app.command(ep.name, cls=getattr(fn, "command_class", None))(fn)  # a command may bring its click class
        known.add(ep.name)
    app.registered_commands.sort(key=lambda c: c.name or "")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    load_commands()
    INVOCATION[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        app(args=argv, prog_name="compressor", standalone_mode=True)
    except CompressorError as exc:
        message = exc.render(flag_for)
        print(f"error: {message}", file=sys.stderr)
        options = INVOCATION[:INVOCATION.index("--")] if "--" in INVOCATION else INVOCATION
        if "--json" in options:
            # a script reading --json output gets the error as JSON where the report would have been
            print(json.dumps({"error": message, "option": flag_for(exc.field) if exc.field else None}))
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:  # typer turns Ctrl-C into a silent exit 130
        if isinstance(exc, SystemExit) and exc.code != 130:
            raise
        print("interrupted: a training or pruning run continues from its last finished epoch when rerun with "
              "--resume", file=sys.stderr)
        sys.exit(130)
