"""The benchmark's outputs: a rich table, JSON (checked against its schema), CSV, Markdown and a PNG Pareto plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from compressor.errors import CompressorError
from compressor.io import atomic_write, atomic_write_text, check_output
from compressor.reporting import fmt, table, to_json

from .schema import load_schema, validate

COLUMNS = ["name", "format", "providers", "batch", "p50 ms", "p90 ms", "p99 ms", "items/s", "peak MB", "file MB",
           "clean", "agree", "transfer", "square", "robust"]
OUTPUTS = ("json", "csv", "md", "png")


def rows(report: dict[str, Any]) -> list[list[Any]]:
    """One row per variant and batch size, in COLUMNS order."""
    out = []
    for v in report["variants"]:
        mem = v["memory"].get("cuda_peak_bytes", v["memory"]["rss_delta_bytes"])
        for lat in v["latency"]:
            out.append([v["name"], v["format"], ",".join(v["providers"]), lat["batch_size"], lat["p50"] * 1e3,
                        lat["p90"] * 1e3, lat["p99"] * 1e3, lat["throughput"], mem / 1e6, v["file_bytes"] / 1e6,
                        v["clean_accuracy"], v["agreement_clean"], v["transfer_worst_case"], v["square"]["accuracy"],
                        v["robust_accuracy"]])
    return out


def rich_table(report: dict[str, Any]) -> Any:
    """The report as a rich renderable."""
    s = report["settings"]
    title = (f"bench on {s['dataset']} {s['split']} (n={s['n']}, {s['norm']} eps={s['eps']:.4g}; white-box "
             f"{','.join(s['attacks']) or 'none'} on the source, {s['square_queries']}-query Square on the engine; "
             f"{s['threads']} thread(s), {s['device']})")
    return table(title, COLUMNS, rows(report))


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
             f"Square, {s['square_queries']} queries",
             f"- {s['threads']} thread(s), device {s['device']}, warm-up {s['warmup']}, {s['runs']} timed runs",
             f"- machine: {env['cpu']} ({env['cpu_count']} cores), GPU {env['gpu'] or 'none'}; "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows(report)]
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


def plot_pareto(report: dict[str, Any], path: str | Path) -> Path:
    """PNG: p50 latency at the smallest batch size vs robust accuracy, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = report["variants"]
    pts = [(v["latency"][0]["p50"] * 1e3, v["robust_accuracy"]) for v in variants]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", zorder=3)
    for v, (x, y) in zip(variants, pts):
        ax.annotate(v["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="tab:red", lw=1.2, marker="o", mfc="none",
            ms=10, label="Pareto front")
    ax.set_ylim(-0.02, 1.02)
    bs = report["settings"]["batch_sizes"][0]
    ax.set_xlabel(f"p50 latency at batch {bs} (ms)")
    ax.set_ylabel("robust accuracy (transfer + Square, worst case)")
    ax.set_title(f"latency vs robustness ({report['settings']['dataset']})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


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
