"""exporters.bench_report: the Pareto PNG stays legible with 20+ variants, tables print measured values to 3
significant figures."""

from __future__ import annotations

import random

import pytest

from exporters.bench_report import fmt_sig, method_of, pareto_figure, plot_pareto, runtime_of, to_markdown

SOURCES = ["dense", *(f"{m}-{s}" for m in ("magnitude", "hydra", "tscnc") for s in (90, 95, 99)),
           "separable-linear", "channels-50"]  # 12 source models x 2 runtimes = 24 variants


def _variant(source: str, fmt: str, provider: str, rng: random.Random) -> dict:
    p50 = rng.uniform(0.4, 3.0) / 1e3
    lat = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "throughput": 1 / p50}
    return {"name": f"{source}:{fmt}", "format": fmt, "providers": [provider],
            "latency": [{"batch_size": 1, **lat}, {"batch_size": 64, **{k: v * 10 for k, v in lat.items()}}],
            "robust_accuracy": rng.uniform(0.05, 0.85), "memory": {"rss_delta_bytes": 12_345_678},
            "file_bytes": 1_234_567, "clean_accuracy": 0.9, "agreement_clean": 1.0, "transfer_worst_case": 0.5,
            "square": {"accuracy": 0.6}}


@pytest.fixture()
def report():
    rng = random.Random(0)
    variants = [_variant(s, fmt, prov, rng) for s in SOURCES
                for fmt, prov in (("pytorch", "pytorch-cpu"), ("onnx", "CPUExecutionProvider"))]
    return {"created": "now", "variants": variants,
            "settings": {"dataset": "digits", "split": "test", "n": 100, "eps": 0.1, "norm": "linf",
                         "batch_sizes": [1, 64], "attacks": ["pgd20"], "square_queries": 100, "threads": 1,
                         "device": "cpu", "warmup": 1, "runs": 5},
            "environment": {"cpu": "x", "cpu_count": 2, "gpu": None, "versions": {"torch": "2"}}}


def test_pareto_plot_with_24_variants_has_a_legend_entry_for_each(report, tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.legend import Legend

    fig = pareto_figure(report)
    try:
        ax = fig.axes[0]
        legends = [c for c in ax.get_children() if isinstance(c, Legend)]
        texts = [t.get_text() for lg in legends for t in lg.get_texts()]
        assert set(SOURCES) <= set(texts) and {"pytorch", "onnx CPU", "Pareto front"} <= set(texts)
        # distinct colour per source model, distinct marker per runtime
        colours = {tuple(h.get_color()) if not isinstance(h.get_color(), str) else h.get_color()
                   for lg in legends for h in lg.legend_handles if h.get_label() in SOURCES}
        assert len(colours) == len(SOURCES)
        markers = {h.get_marker() for lg in legends for h in lg.legend_handles if h.get_label() in ("pytorch", "onnx CPU")}
        assert len(markers) == 2
        # only front points are labelled, and no two labels overlap
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert 0 < len(boxes) < len(report["variants"])
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    finally:
        plt.close(fig)
    png = plot_pareto(report, tmp_path / "p.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_method_and_runtime_names(report):
    v = report["variants"][3]  # magnitude-90:onnx
    assert method_of(v) == "magnitude" and runtime_of(v) == "onnx CPU"
    assert method_of({"name": "separable-linear:pytorch"}) == "separable-linear"
    assert runtime_of(report["variants"][0]) == "pytorch"


def test_tables_print_measured_values_without_meaningless_decimals(report):
    assert [fmt_sig(v) for v in (123456.789, 1234.5, 12.345, 0.012345, 99.96)] == \
        ["123,457", "1,234", "12.3", "0.0123", "100"]
    md = to_markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| dense:pytorch | pytorch | pytorch-cpu | 64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    items_per_s, file_mb = cells[7], cells[9]
    assert "." not in items_per_s and "," not in file_mb and file_mb == "1.23"
