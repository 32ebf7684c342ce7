"""How much a file or an option may make compressor allocate: checked before anything is allocated."""

from __future__ import annotations

import os
import re

from .errors import CompressorError

ENV = "COMPRESSOR_MEMORY_BUDGET"  # bytes, or a number with K, M, G or T (powers of 1024), e.g. 48G
FALLBACK_BUDGET = 8 * 1024**3  # where the machine's memory cannot be read
RAM_FRACTION = 0.5  # the default budget: this share of physical memory (the rest: the model, the OS, other work)
MAX_CLASSES = 100_000  # more classes than any classification set has (ImageNet-21k: 21,841)
MAX_CHANNELS = 1024  # input channels (hyperspectral images stay below this)
MAX_IMAGE_SIDE = 8192  # input height or width, in pixels
MAX_WIDTH = 1 << 16  # a layer width, depth, head count or patch size an architecture's keyword arguments may name
MAX_BATCH_SIZE = 1 << 16  # a batch size given to export or bench
MAX_JSON_DEPTH = 32  # nesting of JSON objects and lists (keyword arguments are flat; deeper is hostile)
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget() -> int:
    """Bytes one allocation that a file or an option declares may take: COMPRESSOR_MEMORY_BUDGET, else half of RAM."""
    text = os.environ.get(ENV)
    if text:
        m = _SIZE.match(text)
        if not m:
            raise CompressorError(f"the environment variable {ENV}={text!r} is not a size: write bytes or e.g. 48G")
        return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    ram = _physical_memory()
    return int(ram * RAM_FRACTION) if ram else FALLBACK_BUDGET


def gigabytes(nbytes: float) -> str:
    """``12.3 GB`` (decimal, three significant digits)."""
    return f"{nbytes / 1e9:.3g} GB"


def check_allocation(nbytes: float, what: str, fix: str) -> None:
    """Refuse `what` (it would take `nbytes`) when that exceeds the memory budget, before it is allocated."""
    budget = memory_budget()
    if nbytes > budget:
        raise CompressorError(f"{what} would take {gigabytes(nbytes)}, more than the memory budget of "
                              f"{gigabytes(budget)} (half this machine's memory; the environment variable {ENV} "
                              f"sets another): {fix}; nothing was allocated")


def check_range(value: object, what: str, low: int, high: int, fix: str) -> int:
    """`value` as an int in [low, high] (bools and fractions are refused), or one line naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = f"{value}" if type(value) is int else f"{type(value).__name__} {value!r}"
        raise CompressorError(f"{what} is {shown}, expected an integer in [{low}, {high:,}]: {fix}")
    return value
