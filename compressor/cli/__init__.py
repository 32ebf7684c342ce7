"""The `compressor` command line: a thin layer over the library's public API."""

from __future__ import annotations

import sys

import typer

from ..errors import CompressorError

app = typer.Typer(
    name="compressor",
    help="Make neural networks compact and adversarially robust, and turn them into deployable engines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

from . import bench, demo, evaluate, export, inspect, listing, prune, train  # noqa: E402,F401  (commands register on import)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="compressor", standalone_mode=True)
    except CompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:  # typer turns Ctrl-C into a silent exit 130
        if isinstance(exc, SystemExit) and exc.code != 130:
            raise
        print("interrupted: a training or pruning run continues from its last finished epoch when rerun with "
              "--resume", file=sys.stderr)
        sys.exit(130)
