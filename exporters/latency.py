"""Latency measurement: warm-up, then per-run timings with the device synchronised, as percentiles."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from compressor.errors import CompressorError


def measure_latency(fn: Callable[[], Any], *, warmup: int = 10, runs: int = 50, sync: Callable[[], None] | None = None,
                    batch_size: int | None = None, cuda_events: bool = False) -> dict[str, float | int]:
    """Time `fn()` `runs` times after `warmup` untimed calls; seconds as p50/p90/p99/mean/min/max.

    `sync` is called after every run, inside the timed region (e.g. ``torch.cuda.synchronize``), so
    asynchronous work is counted. With `cuda_events`, each run is timed by CUDA events on the current
    stream instead of the host clock. With `batch_size`, ``throughput`` is items per second at the mean.
    """
    if runs < 1 or warmup < 0:
        raise CompressorError(f"latency needs runs >= 1 and warmup >= 0, got runs {runs}, warmup {warmup}")
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times = np.empty(runs)
    if cuda_events:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
        for i in range(runs):
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        times[:] = [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
    else:
        for i in range(runs):
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[i] = time.perf_counter() - t0
    return latency_stats(times, warmup=warmup, batch_size=batch_size)


def latency_stats(times: np.ndarray, *, warmup: int, batch_size: int | None = None) -> dict[str, float | int]:
    """Seconds of timed runs as p50/p90/p99/mean/min/max, with ``throughput`` (items/s at the mean) for a batch."""
    times = np.asarray(times, float).ravel()
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    out: dict[str, float | int] = {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(times.mean()),
                                   "min": float(times.min()), "max": float(times.max()), "runs": int(times.size),
                                   "warmup": warmup}
    if batch_size is not None:
        out["batch_size"] = batch_size
        out["throughput"] = batch_size / float(times.mean())
    return out
