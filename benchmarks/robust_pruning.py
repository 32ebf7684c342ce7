#!/usr/bin/env python
"""Robust pruning, protocol v2: magnitude / HYDRA / TSCNC / robust ADMM compared at matched allocation, equal
weight-training epochs, one objective, several seeds, and the same held-out images for every attack and row.

Protocol (every row of the report names its allocation, schedule, epochs and objective):

- **Allocation.** Every method runs at each allocation of ``--allocations``: ``global`` (one threshold across
  layers) and/or ``layer`` (every layer keeps the same fraction), "matched" because all methods share it;
  ``own`` adds each method's registered defaults (TSCNC: global + iterative) as a separate, labelled group.
- **Budget.** Every method trains the weights for ``--epochs-weights`` epochs: magnitude and TSCNC prune
  one-shot at the start of them; robust ADMM spends ``--epochs-admm`` of them in its ADMM phase and the rest
  retraining with hard masks; HYDRA trains its scores for ``--epochs-search`` extra epochs with the weights
  frozen (reported as search epochs), then trains the weights for the full ``--epochs-weights``.
- **Objective.** TRADES for every method (ADMM included); with ``--admm-pgd`` robust ADMM also runs in its
  reference PGD-AT form (labelled ``admm (PGD-AT)``).
- **Seeds.** Every row runs for each of ``--seeds`` (training order, attack starts, HYDRA/TSCNC randomness);
  the data split is fixed by ``--data-seed``. Tables give mean ± std and a 95 % t-interval over seeds, plus
  paired differences (same seed) between methods.
- **Evaluation.** On the first ``--eval-n`` images of the held-out test split, the same for every row:
  clean, PGD-20, APGD-CE, then APGD-T (9 targets) on the points that survived both (AutoAttack's cascade), the
  worst case of the three reported as "APGD-CE+T"; full AutoAttack standard on the same images for the rows
  named by ``--aa-rows``. Checkpoints are selected and hyperparameters chosen on the validation split only
  (PGD on ``--val-n`` validation images); the held-out split is never looked at before the report.
- **Ablations.** TSCNC's lambda over ``--lambdas`` at the first matched allocation (lambda picked on
  validation), and ``--variants`` (extra rows such as ``tscnc:taylor=squared``) at that allocation.
- **kappa.** Per-layer condition numbers every epoch are kept per row and plotted per method and sparsity.

Resumable: each finished row is written to the ``--cache`` folder as it finishes; a re-run with the same
command loads those and runs only what is missing (``--max-minutes`` stops starting new rows so a grid runs in
chunks), then rewrites the report from everything in the cache.

Usage (from the repository root)::

    python benchmarks/robust_pruning.py --dataset digits --seeds 0,1,2
    # the alpha-beta-CROWN CIFAR-10 ResNet-4B (eps 2/255), see benchmarks/README.md for the full command
    python benchmarks/robust_pruning.py --dataset npz:../shared/data/cifar10_test.npz \\
        --dense ../shared/checkpoints/abcrown_resnet4b_adv2px.pth --arch benchmarks.models.abcrown:resnet4b \\
        --mean 0.4914,0.4822,0.4465 --std 0.2471,0.2435,0.2616 --eps 2/255 --steps 5 --tag resnet4b

Writes ``<out>/robust_pruning-<dataset>-<YYYY-MM-DD>[-<tag>].json`` and ``.md`` (and ``-kappa/`` plots); with a
``--cache`` the report belongs to the cache and is rewritten by every chunk.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import math
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, git_state, result_paths, run_main  # noqa: E402  (puts an uninstalled checkout on the path too)
from pruning_grid import build_grid, first_matched, names  # noqa: E402
from pruning_overhead import measure_overhead  # noqa: E402
from pruning_report import kappa_plots, render_markdown  # noqa: E402
from pruning_rows import add_autoattack, dense_model, eps_option, load_data, robust_eval, run_row  # noqa: E402
from pruning_stats import aggregate, comparisons, lambda_choice, lambda_rows, retention  # noqa: E402
from row_cache import MemoryCache, RowCache, row_settings  # noqa: E402

from compressor.checkpoint import library_versions  # noqa: E402
from compressor.environment import load_average, machine_info  # noqa: E402
from compressor.io import atomic_write_text  # noqa: E402
from compressor.parsing import parse_float_list  # noqa: E402
from compressor.reporting import to_json  # noqa: E402

FORMAT = "compressor.benchmark.robust_pruning"
FORMAT_VERSION = 2
DEFAULT_OUT = RESULTS


def count_or_fraction(text: str) -> float | int:
    """``5000`` -> 5000 (a count), ``0.1`` -> 0.1 (a fraction)."""
    value = float(text)
    return int(value) if value >= 1 else value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="digits, npz:PATH or npz:TRAIN,TEST (e.g. "
                   "npz:../shared/data/cifar10_train.npz,../shared/data/cifar10_test.npz)")
    p.add_argument("--val-size", type=count_or_fraction, default=None, help="validation carved from the training split: a count "
                   "(e.g. 5000) or a fraction (default: the dataset's)")
    p.add_argument("--methods", default="magnitude,hydra,tscnc,admm")
    p.add_argument("--sparsities", default="0.9,0.95,0.99")
    p.add_argument("--allocations", default="global,layer", help="matched allocations (global, layer) and/or own "
                   "(each method's defaults), in priority order")
    p.add_argument("--seeds", default="0,1,2", help="training seeds of every row")
    p.add_argument("--lambdas", default="0,1e-4,1e-3,1e-2", help="TSCNC lambda ablation at the first matched "
                   "allocation ('' for none)")
    p.add_argument("--lambda-sparsities", default="", help="sparsities of the lambda ablation (default: all)")
    p.add_argument("--lambdas-weight", default="", help="TSCNC lambdas of the per-weight L_CC reading "
                   "(sum log(tau + w^2), `lcc=weight`), rows beside the --lambdas ones")
    p.add_argument("--schedule-options", default="", help="pruner options of magnitude and TSCNC in the matched "
                   "groups, e.g. 'schedule=cubic,update_every=40' (default: one-shot)")
    p.add_argument("--epochs-schedule", type=int, default=0, help="prune epochs of a moving --schedule-options "
                   "schedule, within --epochs-weights (default: its rounds)")
    p.add_argument("--sparsity-major", action=argparse.BooleanOptionalAction, default=True,
                   help="run every row of the first --sparsities value first, then the next")
    p.add_argument("--variants", default="", help="extra rows at the first matched allocation, ';'-separated, "
                   "e.g. 'tscnc:taylor=squared'")
    p.add_argument("--variant-sparsities", default="", help="sparsities of the --variants rows (default: all)")
    p.add_argument("--admm-pgd", action=argparse.BooleanOptionalAction, default=True,
                   help="also run robust ADMM in its reference PGD-AT form")
    p.add_argument("--dense", type=Path, default=None, help="start from this robust model instead of training one "
                   "(a compressor checkpoint, or a state dict with --arch)")
    p.add_argument("--arch", default=None, help="architecture of a --dense state dict: a zoo name (convnet-mnist) or "
                   "PACKAGE.MODULE:CALLABLE (benchmarks.models.abcrown:resnet4b)")
    p.add_argument("--mean", default=None, help="the --dense model's input normalisation, per channel: 0.49,0.48,0.45")
    p.add_argument("--std", default=None, help="its std, per channel")
    p.add_argument("--no-normalize", action="store_true", help="the --dense model expects raw [0, 1] pixels")
    p.add_argument("--epochs-dense", type=int, default=15)
    p.add_argument("--epochs-weights", type=int, default=4, help="weight-training epochs of every method")
    p.add_argument("--epochs-search", type=int, default=2, help="HYDRA's score epochs (weights frozen), on top")
    p.add_argument("--epochs-admm", type=int, default=2, help="robust ADMM's ADMM-phase epochs, within --epochs-weights")
    p.add_argument("--lr", type=float, default=0.01, help="weight learning rate while pruning and fine-tuning")
    p.add_argument("--lr-search", type=float, default=0.1, help="HYDRA's score learning rate")
    p.add_argument("--lr-dense", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=1e-4, help="every method (HYDRA's and ADMM's reference value)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="attack steps while training")
    p.add_argument("--eps", default=None, help="L-inf budget, e.g. 2/255 (default: the dataset's)")
    p.add_argument("--train-n", type=int, default=None, help="stratified subset of the fine-tune split")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the fixed fine-tune / validation / held-out split")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--val-n", type=int, default=500, help="validation images for checkpoint selection and choices")
    p.add_argument("--eval-n", type=int, default=None, help="held-out images for every attack (default: all)")
    p.add_argument("--eval-channels-last", action=argparse.BooleanOptionalAction, default=False,
                   help="run the evaluation attacks on channels_last weights: fp32, the same numbers up to float "
                        "rounding; PGD 1.23x faster on a ResNet-20 on a CPU (attack_throughput.py; recorded in each row)")
    p.add_argument("--apgd-t", action=argparse.BooleanOptionalAction, default=True,
                   help="run APGD-T on the points that survive PGD-20 and APGD-CE (the costly part of the evaluation)")
    p.add_argument("--aa-rows", default="", help="groups (or GROUP@SPARSITY) whose first-seed rows also get full "
                   "AutoAttack on the same images, e.g. 'global' or 'global@0.95'; 'dense' for the dense model")
    p.add_argument("--overhead-steps", type=int, default=0, help="timed steps per mode for the overhead table (0: skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the dense training and of every evaluation")
    p.add_argument("--save-models", type=Path, default=None, help="keep every pruned model's state dict here (so "
                   "AutoAttack can be added to cached rows later with --aa-rows)")
    p.add_argument("--cache", type=Path, default=None, help="folder of finished rows: resume from it, add to it")
    p.add_argument("--only-cached", action="store_true", help="run no new row: only add AutoAttack (--aa-rows) to "
                   "cached rows from their saved models, and write the report")
    p.add_argument("--max-minutes", type=float, default=None, help="start no new row after this long (then report)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch line while a row trains (its start and "
                   "result lines stay)")
    p.add_argument("--protocol", type=int, default=3, help="protocol version named in the report's title")
    p.add_argument("--note", default="", help="a line for the top of the report (e.g. how the chunks were run)")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--force", action="store_true")
    return p


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> tuple[dict, Path, Path]:
    """Run what the grid still misses (resuming from --cache), evaluate, and write the report."""
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc)
    args.eps_value = eps_option(args.eps)
    grid = build_grid(args)
    cache = (RowCache(args.cache, row_settings(args), started.isoformat(timespec="seconds")) if args.cache
             else MemoryCache(started.isoformat(timespec="seconds")))
    files = args.dataset.removeprefix("npz:").split(",")  # a TRAIN,TEST pair is named by its training file
    slug = re.sub(r"[^a-z0-9]+", "-", Path(files[0]).stem.lower()).strip("-")
    stem = f"robust_pruning-{slug}-{cache.started[:10]}" + (f"-{args.tag}" if args.tag else "")
    if args.cache and (Path(args.out) / f"{stem}.json").is_file():  # the report of this cache: rewritten
        json_path, md_path = Path(args.out) / f"{stem}.json", Path(args.out) / f"{stem}.md"
    else:
        json_path, md_path = result_paths(args.out, stem, args.force)
    load_start = load_average()
    data, notes = load_data(args.dataset, args.train_n, args.data_seed, args.val_size)
    if args.eps_value is None:
        args.eps_value = data.info.default_eps
    dense, dense_train = dense_model(data, args, log)
    dense_row = cache.get("dense")
    if dense_row is None:
        dense_row = robust_eval(dense, data, args, lambda m: log(f"dense: {m}"))
        cache.put("dense", dense_row)
    report_only = args.max_minutes is not None and args.max_minutes <= 0
    if "dense" in args.aa_rows.split(",") and "aa" not in dense_row and not report_only:
        add_autoattack(dense, dense_row, data, args)
        cache.put("dense", dense_row)
    log(f"dense: clean {dense_row['clean']:.3f}, pgd20 {dense_row['pgd20']:.3f}, apgd {dense_row['apgd']:.3f}")
    matched = first_matched(args.allocations)
    rows, ran = [], 0
    for i, spec in enumerate(grid):
        row = cache.get(spec.key)
        out_of_time = args.max_minutes is not None and time.perf_counter() - t_start > 60 * args.max_minutes
        if args.only_cached and row is None:
            continue
        saved = args.save_models / f"{spec.key}.pt" if args.save_models else None
        where = f"[{i + 1}/{len(grid)}] {spec.label} ({spec.group}) @ {spec.sparsity:g} seed {spec.seed}"
        if row is None and not out_of_time and cache.claim(spec.key):
            log(f"{where}: training")
            row, model = run_row(dense, data, spec, args, log=lambda m, w=where: log(f"{w}: {m}"))
            if saved is not None:
                saved.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), saved)
            if spec.aa:
                add_autoattack(model, row, data, args)
            cache.put(spec.key, row)
            ran += 1
            log(f"{where}: clean {row['clean']:.3f}, pgd20 {row['pgd20']:.3f}, apgd {row['apgd']:.3f}"
                + (f", aa {row['aa']:.3f}" if "aa" in row else "")
                + f", val pgd20 {row['val_pgd20']:.3f}, singular {row['singular_layers']}, "
                  f"{row['train_seconds']:.0f}+{row['eval_seconds']:.0f}s")
        elif row is not None and spec.aa and "aa" not in row and saved is not None and saved.is_file() \
                and not out_of_time:  # AutoAttack added later to a cached row, from its saved model
            model = copy.deepcopy(dense)
            model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
            add_autoattack(model.eval(), row, data, args)
            cache.put(spec.key, row)
            log(f"{where}: aa {row['aa']:.3f}")
        if row is not None:
            rows.append(row)
    done = {r["key"] for r in rows}
    missing = [s.key for s in grid if s.key not in done]
    row_seconds = [r["seconds"] for r in rows]
    mean_s = statistics.fmean(row_seconds) if row_seconds else math.nan
    res: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "date": cache.started[:10], "started_utc": cache.started,
        "last_run_utc": started.isoformat(timespec="seconds"), "command": command, "machine": machine_info("cpu"),
        "versions": library_versions(), "git": git_state(), "load_average_start": load_start,
        "dataset": data.info.name, "data_notes": notes,
        "splits": {k: len(getattr(data, k)) for k in ("train", "val", "test")},
        "eps": args.eps_value, "cache": str(args.cache) if args.cache else None,
        "settings": {**row_settings(args), "seeds": args.seeds, "allocations": args.allocations, "lambdas": args.lambdas,
                     "methods": args.methods, "sparsities": args.sparsities, "variants": args.variants,
                     "admm_pgd": args.admm_pgd, "aa_rows": args.aa_rows, "lambdas_weight": args.lambdas_weight,
                     "protocol": args.protocol},
        "dense_train": dense_train, "dense": dense_row, "rows": rows, "note": args.note,
        "summary": aggregate([r for r in rows if r["group"] != "lambda"] + lambda_rows(rows, matched)),
        "comparisons": comparisons(rows, "apgd"), "comparisons_pgd20": comparisons(rows, "pgd20"),
        "lambda_choice": lambda_choice(rows, matched),
        "retention": retention(aggregate(rows), dense_row),
        "cost": {"rows_total": len(grid), "rows_done": len(rows), "rows_run_now": ran,
                 "row_seconds": sum(row_seconds), "row_seconds_mean": mean_s,
                 "train_seconds": sum(r["train_seconds"] for r in rows),
                 "eval_seconds": sum(r["eval_seconds"] for r in rows), "missing": missing,
                 "missing_minutes": len(missing) * mean_s / 60 if row_seconds else math.nan},
    }
    first_group = (names(args.allocations) or ["global"])[0]
    seed0 = int(args.seeds.split(",")[0])
    res["plots"] = kappa_plots(rows, dense_row, json_path.with_name(f"{stem}-kappa"), first_group, seed0)
    methods = names(args.methods)
    if args.overhead_steps and methods:
        sparsities = parse_float_list(args.sparsities, name="--sparsities", allow_empty=True)
        res["overhead"] = measure_overhead(dense, data, methods, sparsities[len(sparsities) // 2], args, log)
    res["load_average_end"] = load_average()
    res["seconds"] = time.perf_counter() - t_start
    atomic_write_text(json_path, to_json(res) + "\n")
    atomic_write_text(md_path, render_markdown(res))
    log(f"wrote {json_path} and {md_path} ({res['seconds']:.0f}s; {len(rows)}/{len(grid)} rows, {ran} run now)")
    return res, json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("robust_pruning", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
