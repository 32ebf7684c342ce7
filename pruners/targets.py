"""A speed or MACs target instead of a channel ratio: the global ratio of the `channels` transform is chosen by
search, on copies of the model, so that the pruned model has at most a fraction of the dense MACs
(`target_macs`, exact and deterministic) or runs a given factor faster than the dense model as measured on this
machine (`target_speedup`, through a latency probe of `compressor.registry.RUNTIMES`)."""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

from torch import nn

from compressor.errors import CompressorError
from compressor.flops import count_macs
from compressor.registry import RUNTIMES

from .transforms.channels import Channels

MAX_RATIO = 0.95  # the most the search removes: every layer keeps at least 5 % of its channels
# Removal is not monotone in the ratio near the top: where rounding to `round_to` would leave no channel,
# Torch-Pruning keeps the layer whole. So the MACs are scanned on a grid first, and bisection runs below the
# first grid ratio that meets the target (MACs); the speed search keeps only architectures with fewer MACs than
# every less pruned one (`_levels`).
GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))
MACS_STEPS = 10  # bisection steps: MACs are cheap to count
# The speed search times architectures, not ratios: many ratios round to the same channel counts, and timing one
# architecture twice would let noise give it two answers. The ratios it steps through to find them:
LEVEL_GRID = tuple(round(0.0125 * k, 4) for k in range(1, 77))
LEVEL_STEP = 0.02  # architectures within 2 % of MACs of a less pruned one are not worth a probe (nor its noise)
DEFAULT_BATCH_SIZES = (1, 64)


def check_target(target_macs: float | None, target_speedup: float | None) -> None:
    """One-line errors for a bad or doubled target."""
    if target_macs is not None and target_speedup is not None:
        raise CompressorError("give one target: `target_macs` or `target_speedup`, not both")
    if target_macs is not None and not 0 < target_macs < 1:
        raise CompressorError(f"`target_macs` {target_macs} must be a fraction of the dense MACs in (0, 1), e.g. 0.5")
    if target_speedup is not None and not target_speedup > 1:
        raise CompressorError(f"`target_speedup` {target_speedup} must be above 1, e.g. 2")


def _pruned_copy(model: nn.Module, channels: Channels, ratio: float, input_shape: Sequence[int],
                 kept: list[str]) -> nn.Module:
    """A copy of `model` with `ratio` of its channels removed (magnitude: the structure does not depend on which)."""
    trial = copy.deepcopy(model)
    channels.remove(trial, ratio, tuple(input_shape), [trial.get_submodule(n) for n in kept])
    return trial


def _bisect(meets: Callable[[float], bool], lo: float, hi: float, steps: int) -> float:
    """The smallest ratio in (lo, hi] found by `steps` halvings for which `meets` holds (it holds at `hi`)."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi


def ratio_for_macs(model: nn.Module, channels: Channels, fraction: float,
                   input_shape: Sequence[int]) -> dict[str, Any]:
    """The smallest channel ratio whose pruned model has at most `fraction` of the dense MACs, with the MACs."""
    dense = count_macs(model, input_shape)
    kept = channels.kept_layers(model, tuple(input_shape))
    macs = _scan(model, channels, input_shape, kept)
    meet = [r for r in GRID if macs[r] <= fraction * dense]
    if not meet:
        least = min(macs.values()) / dense
        raise CompressorError(f"`target_macs` {fraction:g} is out of reach: removing up to {MAX_RATIO:.0%} of the "
                              f"channels leaves at least {least:.1%} of the MACs (the layers kept at full width stay, "
                              f"and channel counts round to multiples of round_to); give a `target_macs` above "
                              f"{least:.2f}")

    def meets(ratio: float) -> bool:
        macs[ratio] = count_macs(_pruned_copy(model, channels, ratio, input_shape, kept), input_shape)
        return macs[ratio] <= fraction * dense

    i = GRID.index(meet[0])
    ratio = _bisect(meets, GRID[i - 1] if i else 0.0, meet[0], MACS_STEPS)
    return {"kind": "macs", "target": fraction, "ratio": ratio, "macs_dense": dense, "macs": macs[ratio],
            "macs_fraction": macs[ratio] / dense}


def _scan(model: nn.Module, channels: Channels, input_shape: Sequence[int], kept: list[str]) -> dict[float, int]:
    """MACs of the pruned model at every `GRID` ratio (`kept`: the layers `channels` keeps at full width)."""
    return {r: count_macs(_pruned_copy(model, channels, r, input_shape, kept), input_shape) for r in GRID}


def _interval_text(b: int, m: dict[str, Any]) -> str:
    low = "n/a" if m["low"] is None else f"{m['low']:.2f}, {m['high']:.2f}"
    return f"batch {b}: {m['speedup']:.2f}x [{low}]"


def _levels(model: nn.Module, channels: Channels, input_shape: Sequence[int],
            kept: list[str]) -> list[tuple[float, int]]:
    """The distinct pruned architectures along the ratio, as (smallest ratio giving it, its MACs), each with at least
    `LEVEL_STEP` fewer MACs than the one before (ordered for a search; none timed twice, none a near-copy); `kept`:
    the layers `channels` keeps at full width."""
    levels: list[tuple[float, int]] = []
    for ratio in LEVEL_GRID:
        macs = count_macs(_pruned_copy(model, channels, ratio, input_shape, kept), input_shape)
        if not levels or macs <= (1 - LEVEL_STEP) * levels[-1][1]:
            levels.append((ratio, macs))
    return levels


class SpeedOutOfReach(CompressorError):
    """A speed target the most pruned architecture does not meet; `limit` is what was measured there."""

    def __init__(self, message: str, limit: dict[str, Any]):
        super().__init__(message)
        self.limit = limit


def ratio_for_speedup(model: nn.Module, channels: Channels, speedup: float, input_shape: Sequence[int], *,
                      runtime: str = "onnxruntime",
                      batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> dict[str, Any]:
    """The smallest channel ratio whose pruned model measures at least `speedup` times faster than `model` at every
    batch size on `runtime` (binary search over the distinct architectures, each timed once), with its intervals."""
    probe = RUNTIMES.get(runtime)
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise CompressorError(f"`target_batch_sizes` {list(batch_sizes)} must be positive batch sizes, e.g. 1,64")
    kept = channels.kept_layers(model, tuple(input_shape))
    levels = _levels(model, channels, input_shape, kept)
    reference = copy.deepcopy(model).eval()
    measured: dict[int, dict[int, dict]] = {}

    def meets(i: int) -> bool:
        if i not in measured:
            candidate = _pruned_copy(model, channels, levels[i][0], input_shape, kept).eval()
            measured[i] = probe(reference, candidate, input_shape=tuple(input_shape), batch_sizes=list(batch_sizes))
        return all(m["speedup"] >= speedup for m in measured[i].values())

    top = len(levels) - 1  # the fewest MACs the transform reaches
    if not meets(top):
        shown = "; ".join(_interval_text(b, m) for b, m in measured[top].items())
        raise SpeedOutOfReach(f"`target_speedup` {speedup:g} is out of reach on {runtime}: removing "
                              f"{levels[top][0]:.0%} of the channels (the fewest MACs the transform reaches) measured "
                              f"{shown}: give a smaller `target_speedup`",
                              {"ratio": levels[top][0], "measured": {str(b): m for b, m in measured[top].items()}})
    lo, hi = 0, top  # levels[0] is the first pruned architecture; the answer is the first level that meets
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid + 1
    dense = count_macs(model, input_shape)
    probed = [{"ratio": levels[i][0], "macs_fraction": levels[i][1] / dense,
               "speedup": {str(b): m["speedup"] for b, m in measured[i].items()}} for i in sorted(measured)]
    return {"kind": "speedup", "target": speedup, "ratio": levels[hi][0], "runtime": runtime,
            "batch_sizes": list(batch_sizes), "probes": len(measured), "architectures": len(levels),
            "probed": probed, "measured": {str(b): m for b, m in measured[hi].items()}}


def target_text(target: dict[str, Any]) -> str:
    """One line: the target, the ratio chosen and what was measured or counted there."""
    if target["kind"] == "macs":
        return (f"target MACs {target['target']:.0%} of dense: channel ratio {target['ratio']:.3f} gives "
                f"{target['macs_fraction']:.1%} ({target['macs']:,} of {target['macs_dense']:,} MACs)")
    shown = "; ".join(_interval_text(int(b), m) for b, m in target["measured"].items())
    probed = ", ".join(f"{p['macs_fraction']:.1%} MACs " + "/".join(f"{v:.2f}x" for v in p["speedup"].values())
                       for p in target.get("probed", []))
    return (f"target speedup {target['target']:g}x on {target['runtime']}: channel ratio {target['ratio']:.3f} "
            f"measured {shown} ({target['probes']} probes" + (f": {probed})" if probed else ")"))
