#!/usr/bin/env python
"""Structural transforms: parameters, MACs and measured ONNX Runtime CPU latency, dense against transformed.

Workloads (random weights: the architectures, not the accuracy, set the cost; CIFAR-10 shape 3x32x32):

* ``vgg16_bn_fc4096`` -- ARLST's VGG-16 with the 2048-4096-4096-10 classifier, dense against
  ``separable-linear`` (the two hidden FC layers as A1 ⊗ A2, near-square factors, nearest-Kronecker init);
* ``resnet18`` -- CIFAR ResNet-18, dense against ``channels:0.5`` (half of the channels removed through
  Torch-Pruning's dependency graph, magnitude importance, counts rounded to multiples of 8, the
  classifier kept).

Each model is exported with ``exporters.onnx.export_onnx`` (dynamo, opset 18, dynamic batch, ONNX
Runtime parity checked) and timed through ``exporters.ort_session.make_session`` on the CPU provider
with an explicit thread count (so its threads do not spin: on a machine where another process holds a
core, spinning threads stall each other and the timings become erratic), one session at a time, at batch 1 and 64 with ``exporters.latency.measure_latency``. The timed runs are
grouped in rounds that alternate dense and transformed (a fresh session per round, after its own warm-up,
each round the median of at least 50 runs); with several rounds the latency is the median of the round
medians, so that a change in machine load touches both alike.
The goal is a measured speedup (dense p50 / transformed p50) of at least 0.9 x the MAC ratio.

Usage (from the repository root)::

    python benchmarks/structural.py                      # both workloads, about 6 minutes on 2 cores
    python benchmarks/structural.py --workloads resnet18 --rounds 1

Writes ``<out>/structural-cpu-<YYYY-MM-DD>.json`` and a ``.md`` beside it; an existing file is kept unless
``--force``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_header, result_paths, run_main, write_results  # noqa: E402

import onnxruntime  # noqa: E402

from compressor.checkpoint import library_versions  # noqa: E402
from compressor.environment import is_busy, load_average, machine_info  # noqa: E402
from compressor.errors import CompressorError  # noqa: E402
from compressor.flops import count_macs  # noqa: E402
from compressor.models import create_model  # noqa: E402
from compressor.reporting import fmt  # noqa: E402
from exporters.latency import measure_latency  # noqa: E402
from exporters.onnx import export_onnx  # noqa: E402
from exporters.ort_session import make_session  # noqa: E402
from pruners.transforms import TransformContext, apply_transforms, parse_transforms  # noqa: E402

FORMAT = "compressor.benchmark.structural"
INPUT_SHAPE = (3, 32, 32)
BATCHES = (1, 64)
GOAL = 0.9  # measured speedup >= 0.9 x the MAC ratio
WORKLOADS: dict[str, dict[str, Any]] = {
    "vgg16_bn_fc4096": {"arch": "vgg16_bn_fc4096", "transform": "separable-linear",
                        "description": "VGG-16-BN, FC 2048-4096-4096-10, hidden FC layers separable (A1 ⊗ A2)"},
    "resnet18": {"arch": "resnet18", "transform": "channels:0.5",
                 "description": "CIFAR ResNet-18, 50 % of the channels removed (Torch-Pruning, round_to 8)"},
}


def build(arch: str, spec: str | None, seed: int) -> tuple[torch.nn.Module, list[dict]]:
    """The zoo model (random weights from `seed`), transformed by `spec` when given; its transform entries."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=10, in_chans=3).eval()
    if spec is None:
        return model, []
    entries = apply_transforms(model, parse_transforms([spec]), TransformContext(INPUT_SHAPE))
    return model.eval(), [{k: v for k, v in e.items() if k != "history"} for e in entries]


def _layer_shapes(model: torch.nn.Module) -> dict[str, str]:
    from compressor.flops import size_report

    return {r["layer"]: r["shape"] for r in size_report(model, None)["layers"]}


def time_sessions(paths: dict[str, Path], batch: int, rounds: int, runs: int, warmup: int, threads: int | None,
                  log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Latency of each ONNX file at `batch`: `rounds` alternating rounds of `runs`, one session alive at a time.

    Each round's p50 is the median of its `runs` timed runs; over rounds, the median of the round p50s.
    """
    x = np.random.default_rng(0).random((batch, *INPUT_SHAPE), dtype=np.float32)
    rounds_of: dict[str, list[dict[str, Any]]] = {k: [] for k in paths}
    for r in range(rounds):
        order = list(paths) if r % 2 == 0 else list(reversed(paths))
        for key in order:
            session = make_session(paths[key], device="cpu", threads=threads)
            name = session.get_inputs()[0].name
            stats = measure_latency(lambda: session.run(None, {name: x}), warmup=warmup, runs=runs,
                                    batch_size=batch)
            rounds_of[key].append(stats)
            session = None  # one ONNX Runtime session alive at a time
        log(f"  batch {batch} round {r + 1}/{rounds}: " + ", ".join(f"{k} p50 {v[-1]['p50'] * 1e3:.2f} ms"
                                                                       for k, v in rounds_of.items()))
    return {k: {"p50_s": float(np.median([s["p50"] for s in v])), "p90_s": float(np.median([s["p90"] for s in v])),
                "mean_s": float(np.mean([s["mean"] for s in v])), "runs": sum(s["runs"] for s in v),
                "rounds": v} for k, v in rounds_of.items()}


def measure_workload(name: str, args: argparse.Namespace, tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Parameters, MACs, per-layer shapes and latency of one workload, dense and transformed."""
    spec = WORKLOADS[name]
    out: dict[str, Any] = {"name": name, "description": spec["description"], "transform": spec["transform"],
                           "models": {}}
    paths = {}
    for key, transform in (("dense", None), ("transformed", spec["transform"])):
        model, entries = build(spec["arch"], transform, args.seed)
        path = tmp / f"{name}-{key}.onnx"
        res = export_onnx(model, path, input_shape=INPUT_SHAPE, batch_sizes=BATCHES, parity=True)
        paths[key] = path
        out["models"][key] = {"parameters": sum(p.numel() for p in model.parameters()),
                              "macs": count_macs(model, INPUT_SHAPE), "onnx_bytes": res.file_bytes,
                              "onnx_max_abs_diff": res.max_abs_diff, "layers": _layer_shapes(model),
                              "transform_entries": entries}
        log(f"{name} {key}: {out['models'][key]['parameters']:,} parameters, {out['models'][key]['macs']:,} MACs")
        del model
    d, t = out["models"]["dense"], out["models"]["transformed"]
    out["parameter_ratio"] = d["parameters"] / t["parameters"]
    out["mac_ratio"] = d["macs"] / t["macs"]
    out["latency"] = {}
    for batch in BATCHES:
        lat = time_sessions(paths, batch, args.rounds, args.runs, args.warmup, args.threads, log)
        speedup = lat["dense"]["p50_s"] / lat["transformed"]["p50_s"]
        out["latency"][str(batch)] = {**lat, "speedup": speedup, "goal_speedup": GOAL * out["mac_ratio"],
                                      "goal_met": speedup >= GOAL * out["mac_ratio"]}
    return out


def render_markdown(res: dict[str, Any]) -> str:
    """The results page."""
    lines = markdown_header("Structural transforms: dense vs transformed (ONNX Runtime, CPU)", res)
    lines += [f"- ONNX Runtime {res['versions']['onnxruntime']}, intra-op threads: {res['ort_threads']} (no spinning); "
              f"latency p50 = median of {res['runs_per_round']} runs per model, batch and round, median over "
              f"{res['rounds']} alternating round(s), one session alive at a time", ""]
    for w in res["workloads"]:
        d, t = w["models"]["dense"], w["models"]["transformed"]
        lines += [f"## {w['name']}: `{w['transform']}`", "", w["description"], "",
                  "| | dense | transformed | ratio |", "|---|---:|---:|---:|",
                  f"| parameters | {fmt(d['parameters'])} | {fmt(t['parameters'])} | {w['parameter_ratio']:.2f}x |",
                  f"| MACs (one image) | {fmt(d['macs'])} | {fmt(t['macs'])} | {w['mac_ratio']:.2f}x |"]
        for batch, lat in w["latency"].items():
            lines.append(f"| latency p50, batch {batch} (ms) | {lat['dense']['p50_s'] * 1e3:.2f} | "
                         f"{lat['transformed']['p50_s'] * 1e3:.2f} | {lat['speedup']:.2f}x |")
        lines += [""]
        for batch, lat in w["latency"].items():
            lines.append(f"- batch {batch}: speedup {lat['speedup']:.2f}x against the goal >= {GOAL} x MAC ratio = "
                         f"{lat['goal_speedup']:.2f}x: **{'met' if lat['goal_met'] else 'missed'}**")
        changed = {k: (d["layers"].get(k), v) for k, v in t["layers"].items() if d["layers"].get(k) != v}
        lines += ["", "Layers whose shape changed (dense -> transformed):", "", "| layer | dense | transformed |",
                  "|---|---|---|"] + [f"| {k} | {a or '-'} | {b} |" for k, (a, b) in changed.items()] + [""]
    return "\n".join(lines)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="structural.py", description="parameters, MACs and ONNX Runtime CPU latency of "
                                                                  "dense against structurally transformed models")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per batch size (default 2)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per round and model (default 50, at least 50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per round and model (default 3)")
    p.add_argument("--threads", type=int, default=_cores(), help="ONNX Runtime intra-op threads, without spinning "
                                                                 "(default: every core this process may use)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: benchmarks/results)")
    p.add_argument("--force", action="store_true", help="overwrite an existing results file")
    return p


def run(args: argparse.Namespace, command: str,
        log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path, Path]:
    """Measure and write the results; returns (results, json path, markdown path)."""
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise CompressorError(f"unknown or no workload {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    for flag, value in (("--rounds", args.rounds), ("--runs", args.runs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise CompressorError(f"{flag} must be at least 1, got {value}")
    if args.runs < 50:
        raise CompressorError(f"--runs is {args.runs}: each median needs at least 50 runs")
    started = _dt.datetime.now(_dt.timezone.utc)
    json_path, md_path = result_paths(args.out, f"structural-cpu-{started:%Y-%m-%d}", args.force)
    load_start = load_average()
    res: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "date": f"{started:%Y-%m-%d}",
        "started_utc": started.isoformat(timespec="seconds"), "command": command, "device": "cpu",
        "machine": machine_info("cpu"), "versions": {**library_versions(), "onnxruntime": onnxruntime.__version__},
        "load_average_start": load_start, "busy_at_start": is_busy(load_start), "ort_threads": args.threads,
        "rounds": args.rounds, "runs_per_round": args.runs, "input_shape": list(INPUT_SHAPE),
        "goal": f"measured speedup >= {GOAL} x MAC ratio", "workloads": [],
    }
    if res["busy_at_start"]:
        log("warning: the machine is busy (1-minute load average above half the cores): timings will be noisy")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            res["workloads"].append(measure_workload(name, args, Path(tmp), log))
    write_results(res, json_path, md_path, render_markdown, log)
    return res, json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("structural", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
