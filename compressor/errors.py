"""Errors that the CLI reports as one line with exit code 2."""

from __future__ import annotations

import re
from typing import Callable

OPTION = re.compile(r"`([a-z][a-z0-9_]*)`")  # an option named in a message: `sparsity`, `trust_pickle`


class CompressorError(Exception):
    """A problem with the user's input: reported as one line naming the problem and the fix.

    Messages name options as the library spells them, in backquotes (`sparsity`, `trust_pickle`), never as
    command-line flags: the CLI shows each as its flag (`render`). `field` is the option at fault, when one is.
    """

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field

    @property
    def options(self) -> list[str]:
        """The options the message names, in order."""
        return list(dict.fromkeys(OPTION.findall(str(self))))

    def render(self, flag: Callable[[str], str]) -> str:
        """The message with every option shown as `flag(name)` (the CLI passes its flag lookup)."""
        return OPTION.sub(lambda m: flag(m.group(1)), str(self))


class UnknownNameError(CompressorError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def error_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), at most `limit` characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
