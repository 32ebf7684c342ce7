"""Progress bars on stderr for long work (attacks, training epochs, exports, bench rounds), one live display shared.

Bars show only when stderr is a terminal, so logs and CI stay clean; ``COMPRESSOR_PROGRESS=1`` forces them on (e.g.
under ``script`` or in a test), ``0`` off. A command's `--quiet` (and `--json`) turns them off through `quiet`.
Callers advance bars with counts they already hold on the host: a bar never synchronises the device.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

FORCE_ENV = "COMPRESSOR_PROGRESS"  # "1": bars even when stderr is not a terminal; "0": never

_quiet: ContextVar[bool] = ContextVar("compressor_progress_quiet", default=False)
_live: ContextVar[Progress | None] = ContextVar("compressor_progress_live", default=None)


@contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """No bars inside this block when `on` (what a command's `--quiet` / `--json` sets)."""
    token = _quiet.set(on or _quiet.get())
    try:
        yield
    finally:
        _quiet.reset(token)


def enabled() -> bool:
    """Whether bars show here: not quiet, and stderr a terminal unless forced by the environment."""
    force = os.environ.get(FORCE_ENV, "").strip()
    if _quiet.get() or force == "0":
        return False
    return force == "1" or sys.stderr.isatty()


def stderr_console() -> Console:
    """The console bars (and the lines printed while they run) write to."""
    return Console(stderr=True, force_terminal=True if os.environ.get(FORCE_ENV, "").strip() == "1" else None)


class Bar:
    """One task of the live display; every method does nothing when bars are off."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None):
        self._progress, self._task = progress, task

    def advance(self, k: int = 1) -> None:
        """`k` more items done (drawn at once: a step faster than the refresh rate still shows)."""
        if self._progress is not None:
            self._progress.advance(self._task, k)
            self._progress.refresh()

    def update(self, *, completed: int | None = None, total: int | None = None, description: str | None = None,
               info: str | None = None) -> None:
        """Set the count, total, label or the text after the bar."""
        if self._progress is not None:
            fields = {"info": info} if info is not None else {}
            self._progress.update(self._task, completed=completed, total=total, description=description, **fields)

    def reset(self, *, total: int | None = None, description: str | None = None) -> None:
        """Start the bar over (a new epoch)."""
        if self._progress is not None:
            self._progress.reset(self._task, total=total, description=description, info="")

    def print(self, text: str) -> None:
        """A line above the bars (or on stderr when they are off)."""
        (self._progress.console if self._progress is not None else stderr_console()).print(text, soft_wrap=True)


@contextmanager
def paused() -> Iterator[None]:
    """No live redraws inside this block (latency timing: the display's refresh thread would share the cores)."""
    progress = _live.get()
    if progress is None:
        yield
        return
    progress.stop()
    try:
        yield
    finally:
        progress.start()


@contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Bar]:
    """A bar for `total` items (a pulsing bar with elapsed time when None), removed when the block ends.

    Bars opened inside another share its live display (rich allows one), so an evaluation inside a training
    epoch shows under the epoch's bar."""
    if not enabled():
        yield Bar()
        return
    progress = _live.get()
    owner = progress is None
    if owner:
        progress = Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                            TimeRemainingColumn(), console=stderr_console(), transient=True)
        progress.start()
    token = _live.set(progress)
    task = progress.add_task(description, total=total, info="")
    try:
        yield Bar(progress, task)
    finally:
        progress.remove_task(task)
        _live.reset(token)
        if owner:
            progress.stop()

