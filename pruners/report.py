"""The typed report of one pruning job (`pruners.prune`), with `to_dict()` for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PruneReport:
    """What `prune` did: its settings, accuracy, condition numbers and size before and after, and per-layer rows."""

    method: str
    input: str
    output: str
    dataset: str
    sparsity_target: float | None
    sparsity_achieved: float
    allocation: str
    pattern: str
    pattern_skipped: list[str]
    schedule: str
    epochs_prune: int
    epochs_finetune: int
    adv: str
    eval: dict[str, Any]  # split, n, attack, eps of the before/after evaluation
    before: dict[str, Any]  # clean_accuracy, <attack>_accuracy, sparsity, kappa_*, singular_layers, lipschitz_bound
    after: dict[str, Any]
    size: dict[str, Any]  # before, after and change (parameters, nonzeros, MACs, bytes)
    layers: list[dict[str, Any]]
    phases: Any
    history: Any
    config: dict[str, Any]  # the pruner's config
    train: dict[str, Any]  # the TrainConfig
    prune_seconds: float
    transforms: list[dict[str, Any]] = field(default_factory=list)
    normalization: dict[str, Any] | None = None
    sparsity_default: bool = False  # the target was the default, not given
    output_default: bool = False  # the output path was chosen by `prune`
    reload_flags: list[str] = field(default_factory=list)  # flags the output needs to load, as its input did
    plots: list[str] | None = None  # kappa plots, when asked for
    updates: dict[str, Any] = field(default_factory=dict)  # the schedule's log: steps per epoch, mask / Z-U updates
    lcc_shrink: dict[str, float] | None = None  # TSCNC: per layer, the cumulative relative shrink L_CC caused
    seconds: float = 0.0
    structural: dict[str, Any] | None = None  # channels removed, parameters and MACs before -> after (`channels`)
    target: dict[str, Any] | None = None  # `target_macs` / `target_speedup`: the ratio chosen, MACs or speedups there

    def headline(self) -> str:
        """The title line: structural compression for a transform-only job (channels), else the sparsity."""
        s = self.structural
        if s is not None and (self.method == "none" or not self.sparsity_achieved):
            return (f"channels: {s['channels_removed']:,} of {s['channels_before']:,} channels removed, parameters "
                    f"{s['parameters']['before']:,} -> {s['parameters']['after']:,}, MACs "
                    f"{_count(s['macs']['before'])} -> {_count(s['macs']['after'])}")
        return f"{self.method}: {self.sparsity_target:.2%} target, {self.sparsity_achieved:.2%} achieved"

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``plots`` only when there are plots)."""
        out = asdict(self)
        if self.plots is None:
            del out["plots"]
        return out


def _count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def structural_summary(entries: list[dict[str, Any]], change: dict[str, Any]) -> dict[str, Any] | None:
    """Channels removed (from the `channels` transform entries) with parameters and MACs before -> after."""
    chans = [e for e in entries if e.get("name") == "channels" and "channels_before" in e]
    if not chans:
        return None
    before, after = chans[0]["channels_before"], chans[-1]["channels_after"]
    return {"channels_before": before, "channels_after": after, "channels_removed": before - after,
            "kept_coupled": [n for e in chans for n in e.get("kept_coupled", [])],
            "parameters": change["parameters"], "macs": change["macs"]}
