"""What the command line is running: its arguments and the flags of library options (light: no torch)."""

from __future__ import annotations

INVOCATION: list[str] = []  # the arguments `main` runs, recorded as the command in what a command writes
FLAGS: dict[str, str] = {}  # option name -> its flag, where that is not --name-with-dashes (commands add theirs)


def flag_for(name: str) -> str:
    """The command-line flag of the library option `name` (errors name options; the CLI shows flags)."""
    return FLAGS.get(name) or "--" + name.replace("_", "-")


def command_line() -> str:
    """The command being run, e.g. ``compressor train cnn-small digits -o m.pt`` (for provenance records)."""
    return " ".join(["compressor", *INVOCATION])


def register_flags(flags: dict[str, str]) -> None:
    """Tell the error printer the flags of options whose flag is not their name with dashes (e.g. lam: --lambda)."""
    FLAGS.update(flags)
