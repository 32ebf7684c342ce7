"""The benchmark's outputs: a rich table, JSON (checked against its schema), CSV, Markdown and a PNG Pareto plot."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any, Sequence

from compressor.errors import CompressorError
from compressor.io import atomic_write, atomic_write_text, check_output
from compressor.reporting import fmt, table, to_json

from .schema import load_schema, validate
from .speedup import interval_text

COLUMNS = ["name", "format", "providers", "batch", "p50 ms", "p90 ms", "p99 ms", "items/s", "peak MB", "file MB",
           "clean", "agree", "transfer", "square", "robust", "speedup (95% CI)", "decision"]
OUTPUTS = ("json", "csv", "md", "png")


def fmt_sig(value: Any, digits: int = 3) -> str:
    """A measured quantity to about `digits` significant figures: 1,234 not 1234.5678; 12.3; 0.0123."""
    if not isinstance(value, float) or not math.isfinite(value):
        return fmt(value)
    if value == 0:
        return "0"
    rounded = float(f"{value:.{digits - 1}e}")  # 99.96 -> 100 before the magnitude is read
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{value:,.{decimals}f}"


# measured columns are printed to 3 significant figures; accuracies keep their fixed decimals
_MEASURED = {"p50 ms", "p90 ms", "p99 ms", "items/s", "peak MB", "file MB"}


def _cells(row: Sequence[Any]) -> list[str]:
    return [fmt_sig(v) if c in _MEASURED else fmt(v) for c, v in zip(COLUMNS, row)]


def rows(report: dict[str, Any]) -> list[list[Any]]:
    """One row per variant and batch size, in COLUMNS order."""
    out = []
    for v in report["variants"]:
        mem = v["memory"].get("cuda_peak_bytes", v["memory"]["rss_delta_bytes"])
        for lat in v["latency"]:
            sp = lat.get("speedup")  # absent in reports written before the interleaved rounds
            batch = lat["batch_size"] if "requested_batch_size" not in lat else \
                f"{lat['batch_size']} (for {lat['requested_batch_size']})"
            out.append([v["name"], v["format"], ",".join(v["providers"]), batch, lat["p50"] * 1e3,
                        lat["p90"] * 1e3, lat["p99"] * 1e3, lat["throughput"], mem / 1e6, v["file_bytes"] / 1e6,
                        v["clean_accuracy"], v["agreement_clean"], v["transfer_worst_case"],
                        (v["square"] or {}).get("accuracy"),
                        v["robust_accuracy"], interval_text(sp), _decision(sp, v)])
    return out


def _decision(sp: dict[str, Any] | None, variant: dict[str, Any]) -> str:
    """The speed decision, marked with '*' when the row has a note (e.g. its format runs dense here)."""
    text = "-" if sp is None else sp["decision"]
    return text + (" *" if variant.get("notes") else "")


def notes_lines(report: dict[str, Any], warnings: bool = True) -> list[str]:
    """What the table's marks mean: each variant's notes, then (with `warnings`) the speedup intervals that
    contain 1."""
    lines = [f"* {v['name']}: {note}" for v in report["variants"] for note in v.get("notes", [])]
    ref = report["settings"].get("reference")
    if ref:
        lines.append(f"speedup: time per item of {ref} / this row's, geometric mean over "
                     f"{report['settings'].get('rounds')} interleaved rounds, 95 % t-interval; 'unclear' = the "
                     "interval contains 1 (the spread exceeds the difference), 'same' = within 5 %")
    return lines + [f"warning: {w}" for w in report.get("speed_warnings", []) if warnings]


def _square(settings: dict[str, Any]) -> str:
    return f"{settings['square_queries']}-query Square" if settings["square_queries"] else "no Square attack"


def rich_table(report: dict[str, Any]) -> Any:
    """The report as a rich renderable."""
    s = report["settings"]
    title = (f"bench on {s['dataset']} {s['split']} (n={s['n']}, {s['norm']} eps={s['eps']:.4g}; white-box "
             f"{','.join(s['attacks']) or 'none'} on the source, {_square(s)} on the engine; "
             f"{s['threads']} thread(s), {s['device']})")
    return table(title, COLUMNS, [_cells(r) for r in rows(report)])


def to_csv(report: dict[str, Any]) -> str:
    """CSV text, one row per variant and batch size."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.replace(" ", "_").replace("/", "_per_") for c in COLUMNS])
    w.writerows(rows(report))
    return buf.getvalue()


def to_markdown(report: dict[str, Any]) -> str:
    """A Markdown table with the settings and environment above it."""
    s, env = report["settings"], report["environment"]
    lines = [f"# compressor bench ({report['created']})", "",
             f"- data: {s['dataset']} {s['split']}, n={s['n']}, {s['norm']} eps={s['eps']:.4g}",
             f"- white-box on the source: {', '.join(s['attacks']) or 'none'}; black-box on the engine: "
             f"{_square(s)}",
             f"- {s['threads']} thread(s), device {s['device']}, warm-up {s['warmup']}, {s['runs']} timed runs",
             f"- machine: {env['cpu']} ({env['cpu_count']} cores), GPU {env['gpu'] or 'none'}; "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows(report)]
    lines += [""] + [f"- {ln}" for ln in notes_lines(report)]
    return "\n".join(lines) + "\n"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower latency and higher accuracy, by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def method_of(variant: dict[str, Any]) -> str:
    """The compression a variant's source model names: ``tscnc-95:onnx`` -> ``tscnc`` (a trailing level dropped)."""
    stem = variant["name"].rsplit(":", 1)[0]
    return re.sub(r"-\d+(\.\d+)?$", "", stem) or stem


def runtime_of(variant: dict[str, Any]) -> str:
    """The runtime a variant ran in: its format and first provider (``onnx CPUExecutionProvider``, ``aoti``...)."""
    provider = variant["providers"][0] if variant["providers"] else ""
    provider = provider.removesuffix("ExecutionProvider")
    return variant["format"] if not provider or provider.startswith(variant["format"]) else \
        f"{variant['format']} {provider}"


_MARKERS = "osD^vP*Xph<>"


def plot_pareto(report: dict[str, Any], path: str | Path) -> Path:
    """PNG: p50 latency at the smallest batch size vs robust accuracy, the Pareto front joined (see pareto_figure)."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(report)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def pareto_figure(report: dict[str, Any]) -> Any:
    """The Pareto plot as a matplotlib Figure (the caller closes it).

    Two panels, robust and clean accuracy against p50 latency, each with its Pareto front and error bars (accuracy:
    binomial standard error over the n images; latency: the range of the per-round medians). Colour = compression
    method (shades for its levels, e.g. 90/95/99 %), marker = runtime; one legend entry per source model and per
    runtime, beside the axes, so 20+ variants stay legible; only the front is labelled.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    variants = report["variants"]
    pts = [(v["latency"][0]["p50"] * 1e3, v["robust_accuracy"]) for v in variants]
    methods = list(dict.fromkeys(method_of(v) for v in variants))
    runtimes = list(dict.fromkeys(runtime_of(v) for v in variants))
    sources = list(dict.fromkeys(v["name"].rsplit(":", 1)[0] for v in variants))
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    base = {m: palette(i % palette.N) for i, m in enumerate(methods)}
    colour = {}
    for m in methods:  # levels of one method: the same hue, darker for the later (higher) levels
        members = [s for s in sources if re.sub(r"-\d+(\.\d+)?$", "", s) == m]
        for j, s in enumerate(members):
            shade = 1.0 - 0.45 * j / max(1, len(members) - 1) if len(members) > 1 else 1.0
            colour[s] = tuple(c * shade for c in base[m][:3])
    marker = {r: _MARKERS[i % len(_MARKERS)] for i, r in enumerate(runtimes)}

    n = max(1, int(report["settings"].get("n") or 1))
    spans = [_latency_span(v) for v in variants]
    xerr = [[max(0.0, x - lo) for (x, _), (lo, _) in zip(pts, spans)],
            [max(0.0, hi - x) for (x, _), (_, hi) in zip(pts, spans)]]
    fig, axes = plt.subplots(2, 1, figsize=(10, 9), dpi=120, sharex=True)
    bs = report["settings"]["batch_sizes"][0]
    for ax, key, label in ((axes[0], "robust_accuracy", "robust accuracy (worst case)"),
                           (axes[1], "clean_accuracy", "clean accuracy")):
        ys = [v[key] for v in variants]
        panel = [(x, y) for (x, _), y in zip(pts, ys)]
        front = pareto_front(panel)
        ax.plot([panel[i][0] for i in front], [panel[i][1] for i in front], color="0.35", lw=1.0, ls="--", zorder=2)
        yerr = [math.sqrt(max(y * (1 - y), 0.0) / n) for y in ys]  # binomial standard error over the n images
        for i, (v, (x, y)) in enumerate(zip(variants, panel)):
            c = colour[v["name"].rsplit(":", 1)[0]]
            ax.errorbar([x], [y], yerr=[yerr[i]], xerr=[[xerr[0][i]], [xerr[1][i]]], fmt="none",
                        ecolor=c, elinewidth=0.8, alpha=0.7, zorder=2.5)
            ax.scatter([x], [y], color=c, marker=marker[runtime_of(v)], s=46, edgecolors="black", linewidths=0.5,
                       zorder=3)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel(f"p50 latency at batch {bs} (ms; bars: range of the round medians)" if key == "clean_accuracy"
                      else "")
        ax.set_ylabel(f"{label}; bars: ±1 s.e.")
        ax.grid(alpha=0.3)
    if pts and max(p[0] for p in pts) / max(min(p[0] for p in pts), 1e-9) > 30:
        axes[0].set_xscale("log")
    fig.suptitle(f"latency vs robust and clean accuracy ({report['settings']['dataset']}, {len(variants)} variants, "
                 f"n={n})")
    src_handles = [Line2D([], [], ls="", marker="o", color=colour[s], markeredgecolor="black", markeredgewidth=0.5,
                          label=s) for s in sources]
    rt_handles = [Line2D([], [], ls="", marker=marker[r], color="0.6", markeredgecolor="black", markeredgewidth=0.5,
                         label=r) for r in runtimes]
    rt_handles.append(Line2D([], [], color="0.35", lw=1.0, ls="--", label="Pareto front"))
    first = axes[0].legend(handles=src_handles, title="model (colour)", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                           fontsize=8, title_fontsize=8, ncol=1 if len(sources) <= 16 else 2, frameon=False)
    axes[0].add_artist(first)
    axes[0].legend(handles=rt_handles, title="runtime (marker)", loc="upper left", bbox_to_anchor=(1.01, -0.05),
                   fontsize=8, title_fontsize=8, frameon=False)
    for ax, key in ((axes[0], "robust_accuracy"), (axes[1], "clean_accuracy")):
        panel = [(x, v[key]) for (x, _), v in zip(pts, variants)]
        _label_front(ax, fig, [(variants[i]["name"], panel[i]) for i in pareto_front(panel)], panel)
    return fig


def _latency_span(variant: dict[str, Any]) -> tuple[float, float]:
    """Lowest and highest per-round p50 (ms) at the first batch size; the p50 itself for an older report."""
    lat = variant["latency"][0]
    rounds = lat.get("round_p50") or [lat["p50"]]
    return min(rounds) * 1e3, max(rounds) * 1e3


def _label_front(ax: Any, fig: Any, points: Sequence[tuple[str, tuple[float, float]]],
                 markers: Sequence[tuple[float, float]]) -> None:
    """Name the Pareto-front points, each at the first offset where it stays inside the axes and overlaps no
    earlier label and no marker; a label that fits nowhere is left out (the legend still identifies the point)."""
    from matplotlib.transforms import Bbox

    fig.tight_layout(rect=(0, 0, 0.8, 1))  # place labels in the final geometry (the right part holds the legends)
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    to_px = ax.transData.transform
    placed = [Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for px, py in (to_px(m) for m in markers)]
    for name, (x, y) in points:
        right_side = to_px((x, y))[0] < frame.x0 + 0.7 * frame.width
        offsets = [(dx if right_side else -dx, dy) for dx in (7, -7) for dy in (5, -13, 15, -23)]
        for dx, dy in offsets:
            text = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                               ha="left" if dx > 0 else "right", zorder=4,
                               bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            text.remove()


def output_paths(out_dir: str | Path, stem: str = "bench") -> dict[str, Path]:
    """Where each output goes."""
    return {k: Path(out_dir) / f"{stem}.{k}" for k in OUTPUTS}


def check_outputs(out_dir: str | Path, force: bool = False) -> dict[str, Path]:
    """Refuse existing outputs (unless `force`) before anything runs."""
    paths = output_paths(out_dir)
    for p in paths.values():
        check_output(p, force)
    return paths


def write_outputs(report: dict[str, Any], out_dir: str | Path, force: bool = False) -> dict[str, Path]:
    """Write JSON (after checking it against the schema), CSV, Markdown and the Pareto PNG to `out_dir`."""
    import json

    paths = check_outputs(out_dir, force)
    text = to_json(report)
    problems = validate(json.loads(text), load_schema("bench"))
    if problems:
        raise CompressorError(f"the bench report does not match its schema ({len(problems)} problems, e.g. "
                              f"{problems[0]}): this is a bug in compressor")
    atomic_write_text(paths["json"], text)
    atomic_write_text(paths["csv"], to_csv(report))
    atomic_write_text(paths["md"], to_markdown(report))
    plot_pareto(report, paths["png"])
    return paths
