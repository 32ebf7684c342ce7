"""PNG plots of condition numbers (matplotlib, Agg backend): per layer before/after, and against epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from compressor.io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finite(values: Sequence[float], cap: float) -> list[float]:
    """Infinite kappa (a singular matrix) is drawn at `cap` so the bar stays visible."""
    return [v if math.isfinite(v) else cap for v in values]


def _cap(*series: Sequence[float]) -> float:
    finite = [v for s in series for v in s if math.isfinite(v) and v > 0]
    return 10 * max(finite) if finite else 10.0


def plot_kappa_layers(path: str | Path, layers: Sequence[str], before: Sequence[float], after: Sequence[float],
                      title: str) -> Path:
    """Bar chart of kappa per layer before and after pruning (log scale; inf drawn at 10x the largest finite)."""
    plt = _pyplot()
    cap = _cap(before, after)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(layers) + 2), 4))
    xs = range(len(layers))
    ax.bar([x - 0.2 for x in xs], _finite(before, cap), width=0.4, label="before")
    ax.bar([x + 0.2 for x in xs], _finite(after, cap), width=0.4, label="after")
    for x, b, a in zip(xs, before, after):
        for dx, v in ((-0.2, b), (0.2, a)):
            if not math.isfinite(v):
                ax.text(x + dx, cap, "inf", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), list(layers), rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("kappa = sigma_max / sigma_min")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_kappa_epochs(path: str | Path, history: Sequence[dict[str, Any]], before: dict[str, float],
                      title: str) -> Path:
    """kappa of every layer against epoch (epoch 0 = before pruning; dashed lines mark phase changes)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = list(before)
    series = {n: [before[n]] + [h["layers"][n]["kappa"] for h in history if "layers" in h] for n in names}
    cap = _cap(*series.values())
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, values in series.items():
        ax.plot(range(len(values)), _finite(values, cap), marker="o", markersize=3, label=n)
    phases = [h.get("phase") for h in history if "layers" in h]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = before pruning)")
    ax.set_ylabel("kappa (inf drawn at the top)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
