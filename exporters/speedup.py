"""Latency you can decide on: variants timed in interleaved rounds (round-robin, so drift of a busy machine hits every
variant alike), the speedup over a reference with a confidence interval over rounds, and the decision it supports."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from compressor.errors import CompressorError

MARGIN = 0.05  # a speedup within 5 % of 1 is not a difference to deploy on
CONFIDENCE = 0.95


def interleaved_rounds(fns: Sequence[Callable[[], Any]], *, rounds: int, runs: int, warmup: int = 0,
                       sync: Callable[[], None] | None = None,
                       clock: Callable[[], float] | None = None) -> np.ndarray:
    """Seconds of every call, shape (rounds, len(fns), runs): each round times every fn `runs` times in turn (the
    starting fn rotates from round to round), after `warmup` untimed calls of each; `sync` runs inside the timing."""
    import time

    if rounds < 1 or runs < 1 or warmup < 0:
        raise CompressorError(f"latency needs `rounds` >= 1, `runs` >= 1 and `warmup` >= 0, got {rounds}, {runs}, "
                              f"{warmup}")
    clock = clock or time.perf_counter
    for fn in fns:
        for _ in range(warmup):
            fn()
    if sync is not None:
        sync()
    times = np.empty((rounds, len(fns), runs))
    for r in range(rounds):
        for k in range(len(fns)):
            v = (r + k) % len(fns)
            for i in range(runs):
                t0 = clock()
                fns[v]()
                if sync is not None:
                    sync()
                times[r, v, i] = clock() - t0
    return times


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def speedup_interval(reference: Sequence[float], variant: Sequence[float], *,
                     confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Speedup of `variant` over `reference` from per-round times (one per round, same rounds): the geometric mean of
    the per-round ratios reference / variant, and a t-interval over rounds on their logarithms."""
    ref, var = np.asarray(reference, float), np.asarray(variant, float)
    if ref.shape != var.shape or ref.size == 0 or np.any(ref <= 0) or np.any(var <= 0):
        raise CompressorError("a speedup needs positive times of the same rounds for the reference and the variant")
    logs = np.log(ref / var)
    mean = float(logs.mean())
    if logs.size < 2:
        return {"speedup": math.exp(mean), "low": None, "high": None, "rounds": int(logs.size),
                "confidence": confidence}
    half = _t_quantile(confidence, logs.size - 1) * float(logs.std(ddof=1)) / math.sqrt(logs.size)
    return {"speedup": math.exp(mean), "low": math.exp(mean - half), "high": math.exp(mean + half),
            "rounds": int(logs.size), "confidence": confidence}


def decide(interval: dict[str, Any], margin: float = MARGIN) -> str:
    """'faster' / 'slower' (the interval excludes 1 and the speedup is beyond `margin`), 'same' (it excludes 1 but
    the difference is within `margin`), or 'unclear' (the interval contains 1: the spread exceeds the difference)."""
    s, low, high = interval["speedup"], interval["low"], interval["high"]
    if low is None or high is None or low <= 1 <= high:
        return "unclear"
    if low > 1 and s >= 1 + margin:
        return "faster"
    if high < 1 and s <= 1 / (1 + margin):
        return "slower"
    return "same"


def interval_text(interval: dict[str, Any] | None) -> str:
    """'1.52x [1.40, 1.63]' (or '1.00x (reference)')."""
    if interval is None:
        return "-"
    if interval.get("reference"):
        return "1.00x (reference)"
    if interval["low"] is None:
        return f"{interval['speedup']:.2f}x [n/a]"
    return f"{interval['speedup']:.2f}x [{interval['low']:.2f}, {interval['high']:.2f}]"
