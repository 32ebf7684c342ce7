#!/usr/bin/env python
"""Robust pruning: magnitude / HYDRA / TSCNC / robust ADMM at several sparsities from one robust dense model.

One dense model is adversarially trained (TRADES) on the dataset's training split; every method then
prunes a copy of it with the same epoch budget (``--epochs-prune`` + ``--epochs-finetune``) through
`pruners.prune_model` (each method with its own defaults: TRADES inside HYDRA / TSCNC / magnitude,
PGD-AT inside ADMM), and is evaluated on the test split: clean accuracy, PGD-20, AutoAttack (when the
``aa`` attack is registered, on the first ``--aa-n`` test images), and the condition numbers of the
pruned weights (kappa mean over the non-singular layers, max, singular layers, kappa on the support,
the product-of-spectral-norms Lipschitz bound).

The overhead of pruning is measured separately: one `Trainer.training_step` of every method's prune
and fine-tune phase, interleaved round-robin with a plain adversarial-training step of the same model
and mode (so machine load hits all alike), plus the per-epoch hooks (mask updates, the TSCNC Taylor
scoring, the condition-number tracking), as the cost of one epoch relative to a plain epoch.

Usage (from the repository root)::

    python benchmarks/robust_pruning.py --dataset digits
    python benchmarks/robust_pruning.py --dataset npz:../shared/data/mnist_test.npz --train-n 2000 --width 16 \\
        --steps 5 --epochs-dense 8 --eval-n 1000

    # from a publicly released PGD-trained MNIST model (../shared/checkpoints, raw-pixel input, eps 0.3)
    python benchmarks/robust_pruning.py --dataset npz:../shared/data/mnist_test.npz --eps 0.3 \\
        --dense ../shared/checkpoints/fastadv_mnist_pgd_madry.pth --arch convnet-mnist --no-normalize

Writes ``<out>/robust_pruning-<dataset>-<YYYY-MM-DD>[-<tag>].json`` and a ``.md`` beside it; an existing
file is kept unless ``--force``.
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
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_header, result_paths, run_main  # noqa: E402  (puts an uninstalled checkout on the path too)

from compressor.checkpoint import library_versions, load_model
from compressor.data import DataBundle, load_dataset
from compressor.data.core import stratified_indices
from compressor.environment import load_average, machine_info
from compressor.io import atomic_write_text
from compressor.models import create_model
from compressor.registry import ATTACKS
from compressor.reporting import fmt, to_json
from compressor.training import TrainConfig, Trainer
from compressor.workflows import evaluate_model, model_kwargs
from pruners import ConditionTracker, condition_summary, make_pruner, prune_model
from pruners.base import Phase

FORMAT = "compressor.benchmark.robust_pruning"
DEFAULT_OUT = RESULTS
GOAL = 1.15  # a pruning or fine-tuning epoch costs at most 1.15x a plain adversarial-training epoch


# ---------------------------------------------------------------- data and the dense model
def load_data(name: str, train_n: int | None, seed: int) -> tuple[DataBundle, str]:
    """The dataset, with the training split reduced to a stratified `train_n` subset when asked."""
    data = load_dataset(name, seed=seed)
    note = data.info.notes
    if train_n and train_n < len(data.train):
        keep, _ = stratified_indices(data.train.y.numpy(), 1 - train_n / len(data.train), seed)
        data = replace(data, train=data.train.subset(keep))
        note += f"; training split reduced to a stratified subset of {len(data.train)} images (seed {seed})"
    return data, note


def dense_model(data: DataBundle, args: argparse.Namespace, log: Callable[[str], None]) -> tuple[torch.nn.Module, dict]:
    """The dense robust model every method starts from: `--dense` loaded, or trained here with TRADES."""
    if args.dense:
        c = data.info.input_shape[0]
        norm = {"mean": [0.0] * c, "std": [1.0] * c} if args.no_normalize else {}
        loaded = load_model(args.dense, arch=args.arch, arch_kwargs=model_kwargs(data.info, **norm))
        ck = loaded.checkpoint
        log(f"dense: loaded {args.dense} ({ck.arch if ck else loaded.source})")
        return loaded.model.eval(), {"source": str(args.dense), "arch": ck.arch if ck else None,
                                     "normalize": not args.no_normalize, "epochs": 0, "seconds": 0.0}
    torch.manual_seed(args.seed)
    model = create_model("cnn-small", **model_kwargs(data.info, width=args.width, hidden=args.hidden))
    cfg = train_config(args, "trades", epochs=args.epochs_dense, lr=args.lr_dense)
    t0 = time.perf_counter()
    result = Trainer(model, data, cfg, [ConditionTracker()], quiet=True).fit()
    log(f"dense: {args.epochs_dense} epochs, best {result.best_epoch}, {time.perf_counter() - t0:.0f}s")
    return model.eval(), {"epochs": args.epochs_dense, "best_epoch": result.best_epoch,
                          "seconds": result.seconds, "epoch_seconds": _epoch_seconds(result.history)}


def train_config(args: argparse.Namespace, adv: str, **kw: Any) -> TrainConfig:
    return TrainConfig(batch_size=args.batch_size, adv=adv, eps=args.eps, steps=args.steps, val_steps=10,
                       val_n=args.val_n, seed=args.seed, device="cpu", log_every=10_000, **kw)


def _epoch_seconds(history: Sequence[dict]) -> float:
    return statistics.median(h["epoch_seconds"] for h in history) if history else math.nan


# ---------------------------------------------------------------- evaluation
def evaluate(model: torch.nn.Module, data: DataBundle, args: argparse.Namespace, aa: bool = True) -> dict[str, Any]:
    """Clean, PGD-20 (and AutoAttack on the first --aa-n images) on the test split, and condition numbers."""
    eps = args.eps if args.eps is not None else data.info.default_eps
    res = evaluate_model(model, data, ["pgd20"], eps=eps, n=args.eval_n, seed=args.seed, device="cpu")
    out = {"clean": res["clean_accuracy"], "pgd20": res["attacks"]["pgd20"]["accuracy"], "n": res["n"]}
    if "aa" in ATTACKS and args.aa_n and aa:
        res_aa = evaluate_model(model, data, ["aa"], eps=eps, n=args.aa_n, seed=args.seed, device="cpu")
        out.update({"aa": res_aa["attacks"]["aa"]["accuracy"], "aa_n": res_aa["n"], "aa_clean": res_aa["clean_accuracy"]})
    cs = condition_summary(model)
    out.update({k: cs[k] for k in ("sparsity", "kappa_mean", "kappa_max", "singular_layers", "kappa_support_mean",
                                   "kappa_support_max", "lipschitz_bound")})
    out["layers"] = cs["layers"]
    return out


# ---------------------------------------------------------------- one pruning run
def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``tscnc:allocation=global,taylor=squared`` -> ("tscnc", {...}); values are int, float or str."""
    method, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        for conv in (int, float):
            try:
                options[key] = conv(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return method.strip(), options


def run_one(dense: torch.nn.Module, data: DataBundle, method: str, options: dict[str, Any], sparsity: float,
            args: argparse.Namespace) -> dict[str, Any]:
    """Prune a copy of the dense model with `method` and evaluate it."""
    model = copy.deepcopy(dense)
    pruner = make_pruner(method, sparsity=sparsity, **options)
    cfg = train_config(args, pruner.default_adv)
    job = prune_model(model, data, pruner, cfg, epochs_prune=args.epochs_prune, epochs_finetune=args.epochs_finetune,
                      quiet=True)
    row = {"method": method, "options": options, "sparsity_target": sparsity, "adv": cfg.adv,
           "seconds": job["seconds"], "epoch_seconds": _epoch_seconds(job["history"]),
           "history": [{k: v for k, v in h.items() if k != "layers"} for h in job["history"]],
           "pattern_skipped": job["pattern_skipped"]}
    aa = any(abs(sparsity - float(a)) < 1e-9 for a in args.aa_sparsities.split(",") if a.strip()) and not options
    row.update(evaluate(model.eval(), data, args, aa=aa))
    return row


# ---------------------------------------------------------------- overhead
def _pruner_trainer(model, data, cfg, method, sparsity, phase, epochs_prune, tracker) -> tuple[Trainer, Any]:
    """A Trainer with `method` set up in `phase` exactly as prune_model would (prune first, then fine-tune)."""
    pruner = make_pruner(method, sparsity=sparsity)
    trainer = None
    for ph in ("prune", "finetune")[: 2 if phase == "finetune" else 1]:
        pruner.start_phase(Phase(ph, epochs_prune, cfg.lr))
        trainer = Trainer(model, data, cfg, [pruner, tracker], quiet=True)
        pruner.on_train_begin(trainer)
        trainer.build_optimizer()
        pruner.on_epoch_begin(trainer, 0)
    return trainer, pruner


def measure_overhead(dense: torch.nn.Module, data: DataBundle, methods: Sequence[str], sparsity: float,
                     args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Per method and phase: median step time vs a plain adversarial step (interleaved), per-epoch hook time."""
    tracker = ConditionTracker()
    rows = []
    plain: dict[str, Trainer] = {}
    setups: dict[str, tuple[str, Trainer, Any]] = {}
    for method in methods:
        adv = make_pruner(method, sparsity=sparsity).default_adv
        cfg = train_config(args, adv, epochs=args.epochs_prune, lr=0.01)
        if adv not in plain:
            plain[adv] = Trainer(copy.deepcopy(dense), data, cfg, quiet=True)
            plain[adv].build_optimizer()
        for phase in ("prune", "finetune"):
            t0 = time.perf_counter()
            trainer, pruner = _pruner_trainer(copy.deepcopy(dense), data, cfg, method, sparsity, phase,
                                              args.epochs_prune, tracker)
            setups[f"{method}/{phase}"] = (adv, trainer, pruner)
    x, y = next(iter(plain[next(iter(plain))].loader))
    times: dict[str, list[float]] = {k: [] for k in [*(f"plain/{a}" for a in plain), *setups]}
    for i in range(args.overhead_steps + 2):
        for key in times:
            trainer = plain[key[6:]] if key.startswith("plain/") else setups[key][1]
            t0 = time.perf_counter()
            trainer.training_step(x, y)
            if i >= 2:  # warm-up
                times[key].append(time.perf_counter() - t0)
    steps = len(plain[next(iter(plain))].loader)
    for key, (adv, trainer, pruner) in setups.items():
        method, phase = key.split("/")
        step = statistics.median(times[key])
        ref = statistics.median(times[f"plain/{adv}"])
        t0 = time.perf_counter()
        tracker.on_epoch_end(trainer, 0, {})
        tracking = time.perf_counter() - t0
        t0 = time.perf_counter()
        pruner.on_epoch_begin(trainer, 0)  # the first epoch of the phase: a mask update in the prune phase
        update = time.perf_counter() - t0
        row = {"method": method, "phase": phase, "adv": adv, "step_seconds": step, "plain_step_seconds": ref,
               "step_ratio": step / ref, "steps_per_epoch": steps, "tracking_seconds": tracking,
               "epoch_begin_seconds": update, "epoch_ratio": (steps * step + tracking) / (steps * ref),
               "epoch_ratio_with_update": (steps * step + tracking + update) / (steps * ref)}
        rows.append(row)
        log(f"overhead {key}: step x{row['step_ratio']:.3f}, epoch x{row['epoch_ratio']:.3f}, "
            f"with its epoch-start work x{row['epoch_ratio_with_update']:.3f}")
    return rows


# ---------------------------------------------------------------- report
def _f(v: Any, digits: int = 3) -> str:
    if isinstance(v, float) and math.isfinite(v) and abs(v) >= 1e4:
        return f"{v:.2e}"
    return fmt(v, digits) if not isinstance(v, float) or math.isfinite(v) else str(v)


def _dense_text(res: dict[str, Any]) -> str:
    d, st = res["dense_train"], res["settings"]
    if d.get("source"):
        return f"{d['arch'] or 'model'} loaded from `{d['source']}` (pretrained, not trained here)"
    return f"cnn-small (width {st['width']}, hidden {st['hidden']}); dense: TRADES, {st['epochs_dense']} epochs"


def render_markdown(res: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    aa = any("aa" in r for r in [res["dense"], *res["rows"]])
    lines = markdown_header(f"Robust pruning on {res['dataset']}", res)
    lines += [
             f"- data: {res['data_notes']}",
             f"- model: {_dense_text(res)}; every method: {res['settings']['epochs_prune']} prune + "
             f"{res['settings']['epochs_finetune']} fine-tune epochs, batch {res['settings']['batch_size']}, "
             f"{res['settings']['steps']} attack steps while training, eps {res['eps']:.4g} (L-inf)",
             f"- evaluation: test split, n = {res['dense']['n']} for clean and PGD-20"
             + (f", AutoAttack (standard) on the first {res['dense'].get('aa_n')} (dense and sparsity "
                f"{res['settings']['aa_sparsities']}: AA is slow on the CPU)" if aa else "")
             + "; kappa = sigma_max / sigma_min of each weight reshaped to (out, in*k*k); 'mean' over non-singular "
               "layers, 'support' = sigma_max / smallest nonzero singular value", "",
             "| method | options | sparsity | clean | PGD-20 |" + (" AA |" if aa else "")
             + " kappa mean | kappa max | singular layers | kappa support mean | support max | Lipschitz bound | s |",
             "|---|---|---|---|---|" + ("---|" if aa else "") + "---|---|---|---|---|---|---|"]
    for r in [{"method": "dense", "options": {}, "sparsity_target": 0.0, "seconds": res["dense_train"]["seconds"],
               **res["dense"]}, *res["rows"]]:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "-"
        cells = [r["method"], opts, f"{r['sparsity']:.4f}", _f(r["clean"]), _f(r["pgd20"])]
        if aa:
            cells.append(_f(r.get("aa")))
        cells += [_f(r["kappa_mean"], 2), _f(r["kappa_max"], 2), str(r["singular_layers"]),
                  _f(r["kappa_support_mean"], 2), _f(r["kappa_support_max"], 2), _f(r["lipschitz_bound"], 3),
                  f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if res.get("overhead"):
        lines += ["", f"## Overhead (goal: an epoch at most {GOAL}x a plain adversarial-training epoch)", "",
                  "Median `Trainer.training_step` time of each phase, interleaved round-robin with a plain step of the "
                  "same model and adversarial mode (ratio = pruner / plain); the epoch ratio adds the condition-number "
                  "tracking (SVDs, once per epoch); 'with epoch-start work' also adds the phase's `on_epoch_begin` "
                  "(prune phase: the mask computation, which for TSCNC is the Taylor scoring on "
                  "--score-samples PGD examples; it runs at epoch 0 and at each iterative round). HYDRA's top-k and "
                  "ADMM's Z/U updates happen inside the steps, so they are in the step ratio.", "",
                  "| method | phase | adv | step ratio | epoch ratio | with epoch-start work | tracking s | epoch-start s |",
                  "|---|---|---|---|---|---|---|---|"]
        for o in res["overhead"]:
            lines.append(f"| {o['method']} | {o['phase']} | {o['adv']} | {o['step_ratio']:.3f} | "
                         f"{o['epoch_ratio']:.3f} | {o['epoch_ratio_with_update']:.3f} | {o['tracking_seconds']:.3f} | "
                         f"{o['epoch_begin_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="digits, or npz:PATH (e.g. npz:../shared/data/mnist_test.npz)")
    p.add_argument("--methods", default="magnitude,hydra,tscnc,admm")
    p.add_argument("--sparsities", default="0.9,0.95,0.99")
    p.add_argument("--variants", default="", help="extra rows, ';'-separated, e.g. 'tscnc:allocation=global'")
    p.add_argument("--dense", type=Path, default=None, help="start from this robust model instead of training one "
                   "(a compressor checkpoint, or a state dict with --arch)")
    p.add_argument("--arch", default=None, help="zoo architecture of a --dense state dict, e.g. convnet-mnist")
    p.add_argument("--no-normalize", action="store_true", help="the --dense model expects raw [0, 1] pixels")
    p.add_argument("--epochs-dense", type=int, default=15)
    p.add_argument("--epochs-prune", type=int, default=2)
    p.add_argument("--epochs-finetune", type=int, default=3)
    p.add_argument("--lr-dense", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="attack steps while training")
    p.add_argument("--eps", type=float, default=None, help="default: the dataset's (0.1 for 1-channel images)")
    p.add_argument("--train-n", type=int, default=None, help="stratified subset of the training split")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--val-n", type=int, default=500)
    p.add_argument("--eval-n", type=int, default=None, help="test images for clean / PGD-20 (default: all)")
    p.add_argument("--aa-n", type=int, default=50, help="test images for AutoAttack (0: skip)")
    p.add_argument("--aa-sparsities", default="0.95", help="sparsities whose (non-variant) rows get AutoAttack")
    p.add_argument("--overhead-steps", type=int, default=12, help="timed steps per mode (0: skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--force", action="store_true")
    return p


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> tuple[dict, Path, Path]:
    """Train, prune, evaluate, measure and write the results."""
    torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc)
    slug = re.sub(r"[^a-z0-9]+", "-", Path(args.dataset.removeprefix("npz:")).stem.lower()).strip("-")
    stem = f"robust_pruning-{slug}-{started:%Y-%m-%d}" + (f"-{args.tag}" if args.tag else "")
    json_path, md_path = result_paths(args.out, stem, args.force)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sparsities = [float(s) for s in args.sparsities.split(",") if s.strip()]
    variants = [parse_variant(v) for v in args.variants.split(";") if v.strip()]
    for m in [*methods, *(v[0] for v in variants)]:
        make_pruner(m, sparsity=0.5)  # unknown names fail before anything runs
    load_start = load_average()
    data, notes = load_data(args.dataset, args.train_n, args.seed)
    dense, dense_train = dense_model(data, args, log)
    res: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "date": f"{started:%Y-%m-%d}",
        "started_utc": started.isoformat(timespec="seconds"), "command": command, "machine": machine_info("cpu"),
        "versions": library_versions(), "load_average_start": load_start, "dataset": data.info.name,
        "data_notes": notes, "splits": {k: len(getattr(data, k)) for k in ("train", "val", "test")},
        "eps": args.eps if args.eps is not None else data.info.default_eps,
        "settings": {k: getattr(args, k) for k in ("epochs_dense", "epochs_prune", "epochs_finetune", "batch_size",
                                                   "steps", "width", "hidden", "train_n", "eval_n", "aa_n",
                                                   "aa_sparsities", "seed")},
        "dense_train": dense_train, "dense": evaluate(dense, data, args), "rows": [],
    }
    log(f"dense: clean {res['dense']['clean']:.3f}, pgd20 {res['dense']['pgd20']:.3f}")
    jobs = [(m, {}, s) for s in sparsities for m in methods] + [(m, o, s) for s in sparsities for m, o in variants]
    for method, options, sparsity in jobs:
        row = run_one(dense, data, method, options, sparsity, args)
        res["rows"].append(row)
        log(f"{method} {options or ''} @ {sparsity}: clean {row['clean']:.3f}, pgd20 {row['pgd20']:.3f}"
            + (f", aa {row['aa']:.3f}" if "aa" in row else "")
            + f", kappa mean {row['kappa_mean']:.3g} max {row['kappa_max']:.3g}, singular {row['singular_layers']}, "
              f"{row['seconds']:.0f}s")
    if args.overhead_steps and methods:
        res["overhead"] = measure_overhead(dense, data, methods, sparsities[len(sparsities) // 2], args, log)
    res["load_average_end"] = load_average()
    res["seconds"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    atomic_write_text(json_path, to_json(res) + "\n")
    atomic_write_text(md_path, render_markdown(res))
    log(f"wrote {json_path} and {md_path} ({res['seconds']:.0f}s)")
    return res, json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("robust_pruning", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
