"""Errors that the CLI reports as one line with exit code 2."""

from __future__ import annotations


class CompressorError(Exception):
    """A problem with the user's input: reported as one line naming the problem and the fix."""


class UnknownNameError(CompressorError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def error_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), at most `limit` characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
