#!/usr/bin/env python
"""Robust channel pruning to a measured speed target: which robust channel method keeps the most robustness at
1.5x, 2x and 3x measured ONNX Runtime CPU speed?

Protocol (every choice is in the report):

- **Dense.** ``--dense`` loaded as a user would (a state dict with ``--arch`` and ``--mean``/``--std``); with
  ``--adapt-epochs N`` it is first adversarially fine-tuned (TRADES, best epoch on validation PGD), e.g. for a
  model released without adversarial training. The adapted weights are kept in the ``--cache`` folder.
- **Target.** For each ``--speedups`` factor, the channel ratio is searched once on the dense model by
  `pruners.targets.ratio_for_speedup`: the `channels` transform (Torch-Pruning's graph, counts rounded to multiples
  of 8, the classifier kept) at bisected ratios, each candidate exported to ONNX and timed against the dense model
  in interleaved rounds on ``--runtime`` at every ``--batch-sizes``; the smallest ratio meeting the factor at
  every batch size wins. A factor out of reach is reported as such.
- **Methods at matched MACs.** Every ``--importances`` (magnitude, adversarial Taylor, HYDRA scores per channel,
  kappa: the TSCNC paper's open question on a conditioning criterion) removes that same ratio, then the model is
  fine-tuned with TRADES for ``--epochs`` epochs (best epoch on validation PGD), for each of ``--seeds``. The MACs
  and parameters of every row are counted, so "matched" can be checked.
- **Evaluation.** Clean, PGD-20, APGD-CE then APGD-T on the survivors ("APGD-CE+T") on the first ``--eval-n``
  test images, the same for every row (`pruning_rows.robust_eval`), and the pruned model's own measured speedup
  over the dense model (interleaved rounds, with its interval) at every batch size.
- **Goal.** A variant at >= 2x measured speedup that keeps >= 90 % of the dense APGD-CE+T accuracy, reported
  whichever way it falls. Latency belongs to the CPU: ``--timed-elsewhere CACHE`` adds another machine's timing of
  the same layer shapes (its ``--search-only`` cache) and checks the goal on that CPU too.

Resumable like robust_pruning.py: finished rows (and the searched ratios) live in ``--cache``; ``--max-minutes``
stops starting new rows; ``--max-minutes 0`` only re-renders the report.

Usage (from the repository root; benchmarks/README.md has the ResNet-4B and ResNet-20 commands)::

    python benchmarks/speed_targets.py --dataset npz:../shared/data/cifar10_train.npz,../shared/data/cifar10_test.npz \\
        --dense ../shared/checkpoints/abcrown_resnet4b_adv2px.pth --arch benchmarks.models.abcrown:resnet4b \\
        --mean 0.4914,0.4822,0.4465 --std 0.2471,0.2435,0.2616 --eps 2/255 --cache results/speed-resnet4b.rows

Writes ``<out>/speed_targets-<dataset>-<YYYY-MM-DD>[-<tag>].json`` and ``.md``.
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

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, git_state, result_paths, run_main, write_results  # noqa: E402
from pruning_rows import eps_option, load_data, robust_eval  # noqa: E402
from row_cache import MemoryCache, RowCache  # noqa: E402
from speed_elsewhere import load_elsewhere, match_elsewhere  # noqa: E402
from speed_rows import adapt_dense, load_dense, search_target, speed_row  # noqa: E402
from speed_report import render_markdown, shared_targets, summary  # noqa: E402

from compressor.checkpoint import library_versions  # noqa: E402
from compressor.environment import load_average, machine_info  # noqa: E402
from compressor.errors import CompressorError  # noqa: E402
from compressor.parsing import parse_float_list  # noqa: E402
from pruners.transforms.channels import IMPORTANCES  # noqa: E402

FORMAT = "compressor.benchmark.speed_targets"
FORMAT_VERSION = 1
SETTINGS = ("dataset", "val_size", "dense", "arch", "mean", "std", "no_normalize", "eps", "steps", "batch_size",
            "lr", "weight_decay", "val_n", "eval_n", "epochs", "adapt_epochs", "lr_adapt", "score_epochs",
            "batch_sizes", "runtime", "data_seed", "seed", "apgd_t", "train_n", "round_to", "keep_shortcuts", "bf16")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True, help="npz:TRAIN,TEST (or any dataset name compressor loads)")
    p.add_argument("--val-size", type=int, default=5000, help="validation images carved from the training split")
    p.add_argument("--dense", type=Path, required=True, help="the robust model every row starts from")
    p.add_argument("--arch", default=None, help="architecture of a --dense state dict (zoo name or MODULE:CALLABLE)")
    p.add_argument("--mean", default=None, help="the --dense model's input normalisation, per channel")
    p.add_argument("--std", default=None, help="its std, per channel")
    p.add_argument("--no-normalize", action="store_true", help="the --dense model expects raw [0, 1] pixels")
    p.add_argument("--eps", default=None, help="L-inf budget, e.g. 2/255 (default: the dataset's)")
    p.add_argument("--steps", type=int, default=5, help="attack steps while training")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=8, help="TRADES fine-tuning epochs after the channels are removed")
    p.add_argument("--adapt-epochs", type=int, default=0, help="TRADES epochs on the dense model first (0: none)")
    p.add_argument("--lr-adapt", type=float, default=0.01)
    p.add_argument("--round-to", type=int, default=8, help="channel counts kept are multiples of this")
    p.add_argument("--bf16", action="store_true",
                   help="train (adaptation, scores, fine-tuning) in bf16 autocast with channels_last: 1.82x per "
                        "ResNet-20 TRADES step measured on an AVX512-BF16 CPU; attacks in evaluation and validation "
                        "stay fp32")
    p.add_argument("--keep-shortcuts", action="store_true",
                   help="`channels` shortcuts=keep: layers coupled to option-A shortcuts stay at full width (default: "
                        "the shortcuts are rewritten as frozen selection convolutions and the residual streams thinned)")
    p.add_argument("--score-epochs", type=int, default=1, help="HYDRA score epochs of importance=hydra")
    p.add_argument("--speedups", default="1.5,2,3", help="measured speed targets, e.g. 1.5,2,3")
    p.add_argument("--importances", default="magnitude,taylor,hydra,kappa", help=f"of {', '.join(IMPORTANCES[:4])}")
    p.add_argument("--seeds", default="0,1", help="fine-tuning seeds of every row")
    p.add_argument("--batch-sizes", default="1,64", help="batch sizes the speedup is measured at")
    p.add_argument("--runtime", default="onnxruntime", help="latency probe (compressor list runtimes)")
    p.add_argument("--train-n", type=int, default=None, help="stratified subset of the fine-tune split")
    p.add_argument("--val-n", type=int, default=1000, help="validation images for checkpoint selection")
    p.add_argument("--eval-n", type=int, default=1000, help="held-out images for every attack")
    p.add_argument("--eval-channels-last", action=argparse.BooleanOptionalAction, default=False,
                   help="run the evaluation attacks on channels_last weights: fp32, the same numbers up to float "
                        "rounding; PGD 1.23x faster on a ResNet-20 on a CPU (attack_throughput.py; recorded in each row)")
    p.add_argument("--apgd-t", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="seed of the adaptation and of every evaluation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-rows", action=argparse.BooleanOptionalAction, default=True,
                   help="time every fine-tuned row; --no-time-rows reuses the target search's timing for rows whose "
                        "layer shapes equal it (for a machine busy with other work after the search)")
    p.add_argument("--cache", type=Path, default=None, help="folder of finished rows: resume from it, add to it")
    p.add_argument("--timed-elsewhere", type=Path, action="append", default=[], metavar="CACHE",
                   help="another CPU's target search of the same dense model (`--search-only --cache CACHE` run "
                        "there; repeatable): its timings of exactly these layer shapes are reported beside, with the "
                        "goal checked on that CPU")
    p.add_argument("--search-only", action="store_true",
                   help="only search the speed targets (on a quiet machine: minutes) and write the report; the "
                        "adaptation and the rows then run later, beside other work, with --no-time-rows")
    p.add_argument("--max-minutes", type=float, default=None, help="start no new row after this long (0: report)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch line while a row trains (its start and "
                   "result lines stay)")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--force", action="store_true")
    return p


def _choices(args: argparse.Namespace) -> tuple[list[float], list[str], list[int], list[int]]:
    """The speed targets, importances, seeds and batch sizes of the command, checked."""
    speedups = parse_float_list(args.speedups, name="--speedups")
    importances = [i.strip() for i in args.importances.split(",") if i.strip()]
    for imp in importances:
        if imp not in IMPORTANCES[:4]:
            raise CompressorError(f"--importances: unknown '{imp}': choose from {', '.join(IMPORTANCES[:4])}")
    seeds = [int(s) for s in parse_float_list(args.seeds, name="--seeds")]
    batches = [int(b) for b in parse_float_list(args.batch_sizes, name="--batch-sizes")]
    if not (speedups and importances and seeds and batches):
        raise CompressorError("--speedups, --importances, --seeds and --batch-sizes each need at least one value")
    return speedups, importances, seeds, batches


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> tuple[dict, Path, Path]:
    """Search the ratios and run the rows the cache still misses, then write the report."""
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    speedups, importances, seeds, batches = _choices(args)
    elsewhere = load_elsewhere(args.timed_elsewhere)  # checked before hours of rows, used by the report
    args.eps_value = eps_option(args.eps)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k in SETTINGS}
    cache = RowCache(args.cache, settings, started) if args.cache else MemoryCache(started)
    slug = re.sub(r"[^a-z0-9]+", "-", Path(args.dataset.removeprefix("npz:").split(",")[0]).stem.lower()).strip("-")
    stem = f"speed_targets-{slug}-{cache.started[:10]}" + (f"-{args.tag}" if args.tag else "")
    rewrite = args.cache and (Path(args.out) / f"{stem}.json").is_file()  # the report of this cache
    json_path, md_path = ((Path(args.out) / f"{stem}.json", Path(args.out) / f"{stem}.md") if rewrite
                          else result_paths(args.out, stem, args.force))
    load_start = load_average()
    data, notes = load_data(args.dataset, args.train_n, args.data_seed, args.val_size)
    args.eps_value = data.info.default_eps if args.eps_value is None else args.eps_value
    dense, dense_info = load_dense(args)
    log(f"dense: loaded {args.dense} ({dense_info['arch']})")

    def out_of_time() -> bool:
        return args.max_minutes is not None and time.perf_counter() - t_start > 60 * args.max_minutes

    input_shape = tuple(data.info.input_shape)
    targets, rows = {}, []
    for s in speedups:  # first: latency depends on the layer shapes alone, not on the weights the adaptation changes
        targets[s] = search_target(dense, input_shape, s, batches, args, cache, log, allowed=not out_of_time())
    if args.adapt_epochs and not args.search_only:
        dense_info["adapted"] = adapt_dense(dense, data, args, cache, log, allowed=not out_of_time())
    shared = shared_targets(targets)  # a target that chose an earlier one's architecture shares its rows
    for s in speedups:
        same = shared.get(s)
        for seed in seeds:
            for imp in importances:
                if same is not None:
                    row = cache.get(f"{imp}-x{same:g}-seed{seed}")
                    if row is not None:
                        rows.append({**row, "target": s, "key": f"{imp}-x{s:g}-seed{seed}", "same_rows_as": same})
                    continue
                key = f"{imp}-x{s:g}-seed{seed}"
                row = cache.get(key)
                if (row is None and targets[s] and targets[s].get("ratio") and not out_of_time()
                        and not args.search_only and cache.claim(key)):
                    log(f"{key}: training")
                    row = speed_row(dense, data, targets[s], imp, seed, batches, args,
                                    state_prefix=cache.folder / key if cache.folder is not None else None,
                                    log=lambda m, k=key: log(f"{k}: {m}"))
                    row["key"], row["git_commit"] = key, git_state().get("commit")
                    cache.put(key, row)
                    log(f"{key}: ratio {row['ratio']:.3f}, MACs {row['macs_fraction']:.1%}, clean {row['clean']:.3f}, "
                        f"pgd20 {row['pgd20']:.3f}, apgd {row['apgd']:.3f}, speedup "
                        + ", ".join(f"b{b} {m['speedup']:.2f}x" for b, m in row["speed"].items()))
                if row is not None:
                    rows.append(row)
    dense_row = cache.get("dense")  # after the rows: only the report needs it, and a second process runs rows
    if dense_row is None and not out_of_time() and not args.search_only and cache.claim("dense"):
        dense_row = robust_eval(dense, data, args, lambda m: log(f"dense: {m}"))
        cache.put("dense", dense_row)
    reachable = [s for s in speedups if targets[s] is None or targets[s].get("ratio") is not None]
    res: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "date": cache.started[:10], "started_utc": cache.started,
        "last_run_utc": started, "command": command, "machine": machine_info("cpu"), "versions": library_versions(),
        "git": git_state(), "load_average_start": load_start, "dataset": data.info.name, "data_notes": notes,
        "splits": {k: len(getattr(data, k)) for k in ("train", "val", "test")}, "eps": args.eps_value,
        "settings": {**settings, "speedups": speedups, "importances": importances, "seeds": seeds},
        "dense_info": dense_info, "dense": dense_row, "targets": {str(s): t for s, t in targets.items()}, "rows": rows,
        "missing": [f"{i}-x{s:g}-seed{d}" for s in reachable for d in seeds for i in importances
                    if not any(r["key"] == f"{i}-x{s:g}-seed{d}" for r in rows)],
    }
    res["elsewhere"] = match_elsewhere(elsewhere, targets)
    res["summary"] = summary(res)
    res["seconds"] = time.perf_counter() - t_start
    write_results(res, json_path, md_path, render_markdown, log)
    return res, json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("speed_targets", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
