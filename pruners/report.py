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

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``plots`` only when there are plots)."""
        out = asdict(self)
        if self.plots is None:
            del out["plots"]
        return out
