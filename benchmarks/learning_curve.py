#!/usr/bin/env python
"""The weight-epoch budget of a robust-pruning grid, from a measured learning curve (protocol v3).

One method (magnitude by default) at one sparsity is pruned and fine-tuned with each budget of ``--budgets``
weight epochs (separate runs, each with its own learning-rate schedule, as the grid would run them) and scored on
validation PGD-20 only: the held-out split is never looked at. The chosen budget is the smallest one whose doubling
adds less than ``--flat`` of validation PGD-20; when no measured doubling is that flat, the largest budget is
reported as "not flattened".

Takes every data, model and training option of ``robust_pruning.py`` (same meaning, same cache rules: one JSON per
finished budget in ``--cache``, so several processes can share one curve: e.g. ``--budgets 8`` in one and
``--budgets 1,2,4`` in another, then ``--budgets 1,2,4,8 --only-cached`` writes the whole report).

Usage (from the repository root; the ResNet-4B command is in benchmarks/README.md)::

    python benchmarks/learning_curve.py --dataset digits --budgets 1,2,4 --sparsity 0.95
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_state, markdown_header, result_paths, run_main, write_results  # noqa: E402

import pruning_rows as pr  # noqa: E402
import robust_pruning  # noqa: E402
from pruning_grid import RowSpec, recipe  # noqa: E402
from row_cache import MemoryCache, RowCache, row_settings  # noqa: E402

from compressor.checkpoint import library_versions  # noqa: E402
from compressor.environment import load_average, machine_info  # noqa: E402
from compressor.errors import CompressorError  # noqa: E402
from compressor.parsing import parse_float_list  # noqa: E402

FORMAT = "compressor.benchmark.learning_curve"
FLAT = 0.01  # doubling the budget adds less than 1 point of validation PGD-20: the curve has flattened


def choose_budget(curve: dict[int, float], flat: float) -> tuple[int, bool]:
    """The smallest budget b with curve[2b] - curve[b] < flat, and whether one was found (else the largest b)."""
    for b in sorted(curve):
        if 2 * b in curve and curve[2 * b] - curve[b] < flat:
            return b, True
    return max(curve), False


def curve_spec(args: argparse.Namespace, budget: int) -> RowSpec:
    """The row of one budget: `--method` at `--sparsity`, `--allocation`, one-shot, `budget` weight epochs."""
    args.epochs_weights = budget
    opts, prune, finetune = recipe(args.method, args.allocation, {}, args.sparsity, args)
    return RowSpec("curve", args.method, f"{args.method} {budget} epochs", tuple(sorted(opts.items())), "trades",
                      prune, finetune, args.sparsity, args.curve_seed)


def render_markdown(res: dict[str, Any]) -> str:
    lines = markdown_header("Learning curve: weight-epoch budget of the robust-pruning grid", res)
    if res.get("note"):
        lines[1:1] = ["", f"> Note: {res['note']}"]
    lines += ["", f"- data: {res['data_notes']}; splits: " + ", ".join(f"{k} {v}" for k, v in res["splits"].items()),
              f"- rows: {res['method']} at sparsity {res['sparsity']:g}, allocation {res['allocation']}, one-shot, "
              f"seed {res['seed']}; validation PGD-20 on {res['val_n']} validation images (the held-out split is "
              "not used)", "",
              "| weight epochs | val clean | val PGD-20 | gain from doubling | train s |", "|---|---|---|---|---|"]
    curve = {r["weight_epochs"]: r for r in res["rows"]}
    for b in sorted(curve):
        r = curve[b]
        gain = f"{100 * (curve[2 * b]['val_pgd20'] - r['val_pgd20']):+.1f}" if 2 * b in curve else "-"
        lines.append(f"| {b} | {100 * r['val_clean']:.1f} | {100 * r['val_pgd20']:.1f} | {gain} | "
                     f"{r['train_seconds']:.0f} |")
    c = res["choice"]
    verdict = (f"**{c['budget']} weight epochs**: doubling it adds less than {100 * res['flat']:.0f} point of "
               "validation PGD-20" if c["flattened"] else
               f"**{c['budget']} weight epochs** (the largest measured): no measured doubling added less than "
               f"{100 * res['flat']:.0f} point, so the curve has not flattened within the budgets run")
    lines += ["", f"Dense model: validation clean {100 * res['dense']['val_clean']:.1f}, PGD-20 "
                  f"{100 * res['dense']['val_pgd20']:.1f}.", "", f"Chosen budget: {verdict}."]
    if res["missing"]:
        lines += ["", "Budgets not run yet: " + ", ".join(map(str, res["missing"])) + " (re-run the command)."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> tuple[dict, Path, Path]:
    """Run the budgets still missing from the cache and write the curve with its chosen budget."""
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc)
    args.eps_value = pr.eps_option(args.eps)
    budgets = sorted({int(b) for b in parse_float_list(args.budgets, name="--budgets", allow_empty=True)})
    if not budgets or budgets[0] < 1:
        raise CompressorError(f"--budgets '{args.budgets}' must be weight-epoch counts >= 1, e.g. 1,2,4,8")
    settings = {**row_settings(args), "method": args.method, "sparsity": args.sparsity,
                "allocation": args.allocation,
                "curve_seed": args.curve_seed}
    stamp = started.isoformat(timespec="seconds")
    cache = RowCache(args.cache, settings, stamp) if args.cache else MemoryCache(stamp)
    slug = re.sub(r"[^a-z0-9]+", "-", Path(args.dataset.removeprefix("npz:").split(",")[0]).stem.lower()).strip("-")
    stem = f"learning_curve-{slug}-{cache.started[:10]}" + (f"-{args.tag}" if args.tag else "")
    rewrite = args.cache and (Path(args.out) / f"{stem}.json").is_file()
    json_path, md_path = ((Path(args.out) / f"{stem}.json", Path(args.out) / f"{stem}.md") if rewrite
                          else result_paths(args.out, stem, args.force))
    load_start = load_average()
    data, notes = pr.load_data(args.dataset, args.train_n, args.data_seed, args.val_size)
    if args.eps_value is None:
        args.eps_value = data.info.default_eps
    dense, _ = pr.dense_model(data, args, log)
    dense_row = cache.get("dense")
    if dense_row is None:
        dense_row = pr.validation_eval(dense, data, args)
        cache.put("dense", dense_row)
    rows = []
    for b in budgets:
        spec = curve_spec(args, b)
        row = cache.get(spec.key)
        if row is None and not args.only_cached:
            row, _ = pr.run_row(dense, data, spec, args, evaluate_row=pr.validation_eval)
            cache.put(spec.key, row)
            log(f"{b} weight epochs: val clean {row['val_clean']:.3f}, val pgd20 {row['val_pgd20']:.3f}, "
                f"{row['train_seconds']:.0f}+{row['eval_seconds']:.0f}s")
        if row is not None:
            rows.append(row)
    curve = {r["weight_epochs"]: r["val_pgd20"] for r in rows}
    budget, flattened = choose_budget(curve, args.flat) if curve else (None, False)
    res: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "date": cache.started[:10], "started_utc": cache.started,
        "command": command, "machine": machine_info("cpu"), "versions": library_versions(), "git": git_state(),
        "load_average_start": load_start, "dataset": data.info.name, "data_notes": notes,
        "splits": {k: len(getattr(data, k)) for k in ("train", "val", "test")}, "eps": args.eps_value,
        "settings": settings, "method": args.method, "sparsity": args.sparsity, "allocation": args.allocation,
        "seed": args.curve_seed, "val_n": dense_row["val_n"], "flat": args.flat, "dense": dense_row, "rows": rows,
        "curve": curve, "choice": {"budget": budget, "flattened": flattened}, "note": args.note,
        "missing": [b for b in budgets if b not in curve], "seconds": time.perf_counter() - t_start,
    }
    write_results(res, json_path, md_path, render_markdown, log)
    return res, json_path, md_path


def build_parser() -> argparse.ArgumentParser:
    p = robust_pruning.build_parser()
    p.description = __doc__.split("\n\n")[0]
    p.add_argument("--budgets", default="1,2,4,8", help="weight-epoch budgets to measure")
    p.add_argument("--method", default="magnitude", help="the method of the curve's rows")
    p.add_argument("--sparsity", type=float, default=0.95)
    p.add_argument("--allocation", default="layer", choices=("layer", "global"))
    p.add_argument("--curve-seed", type=int, default=0, help="training seed of every budget")
    p.add_argument("--flat", type=float, default=FLAT, help="validation PGD-20 gain below which a doubling is flat")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("learning_curve", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
