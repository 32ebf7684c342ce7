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
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_header, result_paths, run_main  # noqa: E402  (puts an uninstalled checkout on the path too)

from compressor.attacks import build_attack
from compressor.checkpoint import library_versions, load_model
from compressor.data import DataBundle, load_dataset
from compressor.data.core import stratified_indices
from compressor.environment import load_average, machine_info
from compressor.errors import CompressorError
from compressor.evaluation import evaluate
from compressor.io import atomic_write_text, process_alive
from compressor.models import create_model
from compressor.reporting import fmt, to_json
from compressor.training import TrainConfig, Trainer
from compressor.workflows import model_kwargs
from pruners import ConditionTracker, condition_summary, make_pruner, prune_model
from pruners.base import Phase
from pruners.callback import PrunerCallback
from pruners.plots import plot_kappa_epochs

FORMAT = "compressor.benchmark.robust_pruning"
FORMAT_VERSION = 2
DEFAULT_OUT = RESULTS
GOAL = 1.15  # a pruning or fine-tuning epoch costs at most 1.15x a plain adversarial-training epoch
METRICS = ("clean", "pgd20", "apgd_ce", "apgd", "aa", "val_clean", "val_pgd20")
# settings that change what a cached row means: a cache made with other values is refused
ROW_SETTINGS = ("dataset", "val_size", "schedule_options", "epochs_schedule", "dense", "arch", "mean", "std", "no_normalize", "eps", "train_n", "val_n", "eval_n",
                "data_seed", "epochs_dense", "epochs_weights", "epochs_search", "epochs_admm", "lr", "lr_search",
                "weight_decay", "batch_size", "steps", "width", "hidden", "seed", "apgd_t")


# ---------------------------------------------------------------- data and the dense model
def parse_eps(text: str | None) -> float | None:
    """``0.03``, ``2/255`` -> float (None stays None: the dataset's default)."""
    if text is None:
        return None
    num, sep, den = str(text).partition("/")
    try:
        value = float(num) / (float(den) if sep else 1.0)
    except ValueError:
        raise CompressorError(f"--eps '{text}' is not a number: write e.g. 0.0313 or 8/255") from None
    if not value > 0:
        raise CompressorError(f"--eps must be > 0, got {text}")
    return value


def count_or_fraction(text: str) -> float | int:
    """``5000`` -> 5000 (a count), ``0.1`` -> 0.1 (a fraction)."""
    value = float(text)
    return int(value) if value >= 1 else value


def parse_floats(text: str, what: str) -> list[float]:
    """``'0.9,0.95'`` -> [0.9, 0.95]; anything else is a one-line error."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CompressorError(f"{what} '{text}' is not a comma-separated list of numbers") from None


def load_data(name: str, train_n: int | None, seed: int, val_size: float | int | None = None
              ) -> tuple[DataBundle, str]:
    """The dataset split once with `seed` (fixed across runs), the fine-tune split reduced to `train_n`."""
    data = load_dataset(name, seed=seed, val_size=val_size)
    note = data.info.notes
    if train_n and train_n < len(data.train):
        keep, _ = stratified_indices(data.train.y.numpy(), 1 - train_n / len(data.train), seed)
        data = replace(data, train=data.train.subset(keep))
        note += f"; fine-tune split reduced to a stratified subset of {len(data.train)} images (seed {seed})"
    return data, note


def load_dense(path: Path, arch: str | None, kwargs: dict[str, Any]) -> tuple[torch.nn.Module, str | None]:
    """`path` loaded as a user would (`compressor.checkpoint.load_model`): a compressor checkpoint, or a state dict
    with a zoo `arch` or an import path ``PACKAGE.MODULE:CALLABLE`` (e.g. benchmarks.models.abcrown:resnet4b)."""
    loaded = load_model(path, arch=arch, arch_kwargs=kwargs)
    return loaded.model, (loaded.checkpoint.arch if loaded.checkpoint else None)


def dense_model(data: DataBundle, args: argparse.Namespace, log: Callable[[str], None]) -> tuple[torch.nn.Module, dict]:
    """The dense robust model every method starts from: `--dense` loaded, or trained here with TRADES."""
    if args.dense:
        c = data.info.input_shape[0]
        norm = {"mean": [0.0] * c, "std": [1.0] * c} if args.no_normalize else {}
        if args.mean is not None:
            norm = {"mean": parse_floats(args.mean, "--mean"), "std": parse_floats(args.std or "", "--std")}
        model, arch = load_dense(args.dense, args.arch, model_kwargs(data.info, **norm))
        log(f"dense: loaded {args.dense} ({arch})")
        return model.eval(), {"source": str(args.dense), "arch": arch, "normalize": norm or "dataset's",
                              "epochs": 0, "seconds": 0.0}
    torch.manual_seed(args.seed)
    model = create_model("cnn-small", **model_kwargs(data.info, width=args.width, hidden=args.hidden))
    cfg = train_config(args, "trades", args.seed, epochs=args.epochs_dense, lr=args.lr_dense)
    t0 = time.perf_counter()
    result = Trainer(model, data, cfg, [ConditionTracker()], quiet=True).fit()
    log(f"dense: {args.epochs_dense} epochs, best {result.best_epoch}, {time.perf_counter() - t0:.0f}s")
    return model.eval(), {"epochs": args.epochs_dense, "best_epoch": result.best_epoch,
                          "seconds": result.seconds, "epoch_seconds": _epoch_seconds(result.history)}


def train_config(args: argparse.Namespace, adv: str, seed: int, **kw: Any) -> TrainConfig:
    return TrainConfig(batch_size=args.batch_size, adv=adv, eps=args.eps_value, steps=args.steps, val_steps=10,
                       val_n=args.val_n, seed=seed, device="cpu", log_every=10_000, weight_decay=args.weight_decay,
                       **kw)


def _epoch_seconds(history: Sequence[dict]) -> float:
    return statistics.median(h["epoch_seconds"] for h in history) if history else math.nan


# ---------------------------------------------------------------- the grid
@dataclass(frozen=True)
class RowSpec:
    """One pruning run: method, options, objective and epochs at one sparsity and seed, in a labelled group."""

    group: str  # "global" / "layer" (matched allocation), "own" (each method's defaults), "lambda", "variant"
    method: str
    label: str  # what the tables call it, e.g. "admm (PGD-AT)", "tscnc lambda=0"
    options: tuple[tuple[str, Any], ...]
    adv: str
    epochs_prune: int
    epochs_finetune: int
    sparsity: float
    seed: int
    aa: bool = False

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        text = f"{self.group}-{self.method}-{opts}-{self.adv}-{self.epochs_prune}+{self.epochs_finetune}"
        return re.sub(r"[^A-Za-z0-9.=+,-]+", "_", f"{text}-s{self.sparsity:g}-seed{self.seed}")

    @property
    def cell(self) -> tuple[str, str, float]:
        """The table cell this row is one seed of."""
        return self.group, self.label, self.sparsity


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


def recipe(method: str, allocation: str, options: dict[str, Any], sparsity: float,
           args: argparse.Namespace) -> tuple[dict[str, Any], int, int]:
    """Options and (prune, fine-tune) epochs giving `method` `--epochs-weights` weight-training epochs."""
    w = args.epochs_weights
    if allocation == "own":  # the method's registered defaults, with the same weight-training budget
        opts = dict(options)
        cfg = make_pruner(method, sparsity=sparsity, **opts).config
        moving = cfg.schedule != "oneshot"
        prune = {"hydra": args.epochs_search, "admm": args.epochs_admm}.get(method, cfg.rounds if moving else 0)
    else:  # --schedule-options (one-shot by default) unless the row's options ask for another schedule
        opts = {"allocation": allocation, **options}
        if method not in ("hydra", "admm"):
            for key, value in parse_variant(":" + (args.schedule_options or "schedule=oneshot"))[1].items():
                opts.setdefault(key, value)
        cfg = make_pruner(method, sparsity=sparsity, **opts).config
        scheduled = args.epochs_schedule or cfg.rounds  # prune epochs of a moving schedule
        prune = {"hydra": args.epochs_search, "admm": args.epochs_admm}.get(
            method, scheduled if cfg.schedule != "oneshot" else 0)
    finetune = w if method == "hydra" else w - prune  # HYDRA's prune epochs train scores only
    if finetune < (1 if method == "hydra" else 0) or prune + finetune < 1:
        raise CompressorError(f"--epochs-weights {w} leaves no epochs for {method} after its {prune} prune epochs: "
                              "raise --epochs-weights")
    return opts, prune, finetune


def build_grid(args: argparse.Namespace) -> list[RowSpec]:
    """Every row, in the order they run: matched allocations first, then the ablations and the other groups."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sparsities = parse_floats(args.sparsities, "--sparsities")
    allocations = [a.strip() for a in args.allocations.split(",") if a.strip()]
    for a in allocations:
        if a not in ("global", "layer", "own"):
            raise CompressorError(f"unknown allocation '{a}' in --allocations: choose global, layer or own")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        raise CompressorError("--seeds is empty: give e.g. 0,1,2")
    matched = next((a for a in allocations if a != "own"), "global")
    lambdas = parse_floats(args.lambdas, "--lambdas")
    lam_sparsities = parse_floats(args.lambda_sparsities, "--lambda-sparsities") if args.lambda_sparsities else sparsities
    variants = [parse_variant(v) for v in args.variants.split(";") if v.strip()]
    aa_rows = {r.strip() for r in args.aa_rows.split(",") if r.strip()}
    for m in [*methods, *(v[0] for v in variants)]:
        make_pruner(m, sparsity=0.5)  # unknown names fail before anything runs

    def spec(group, method, label, options, sparsity, seed, adv="trades", allocation=None):
        opts, p, f = recipe(method, allocation or group, options, sparsity, args)
        aa = seed == seeds[0] and (group in aa_rows or f"{group}@{sparsity:g}" in aa_rows)
        return RowSpec(group, method, label, tuple(sorted(opts.items())), adv, p, f, sparsity, seed, aa)

    default_lam = make_pruner("tscnc", sparsity=0.5).config.lam  # its rows are the matched TSCNC rows
    blocks: list[list[RowSpec]] = []
    for alloc in allocations:  # one block per allocation: seed-major, so a partial grid has whole seeds
        rows = [spec(alloc, m, m, {}, s, seed) for seed in seeds for s in sparsities for m in methods]
        pgd = [spec(alloc, "admm", "admm (PGD-AT)", {}, s, seed, adv="pgd") for seed in seeds for s in sparsities]
        blocks.append(rows + (pgd if args.admm_pgd and "admm" in methods else []))
    first = [r for r in blocks[0] if r.adv != "pgd"]
    extra = [spec("lambda", "tscnc", f"tscnc lambda={lam:g}", {"lam": lam}, s, seed, allocation=matched)
             for seed in seeds for s in lam_sparsities for lam in lambdas if lam != default_lam]
    extra += [spec("lambda", "tscnc", f"tscnc lcc=weight lambda={lam:g}", {"lcc": "weight", "lam": lam}, s, seed,
                   allocation=matched)
              for seed in seeds for s in lam_sparsities for lam in parse_floats(args.lambdas_weight, "--lambdas-weight")]
    var_sparsities = parse_floats(args.variant_sparsities, "--variant-sparsities") if args.variant_sparsities \
        else sparsities
    extra += [spec("variant", m, m + ":" + ",".join(f"{k}={v}" for k, v in o.items()), o, s, seed, allocation=matched)
              for seed in seeds for s in var_sparsities for m, o in variants]
    grid = first + extra + [r for r in blocks[0] if r.adv == "pgd"] + [r for b in blocks[1:] for r in b]
    if args.sparsity_major:  # every row of the first sparsity, then the next: a partial grid has whole sparsities
        order = {s: i for i, s in enumerate(dict.fromkeys([*sparsities, *lam_sparsities, *var_sparsities]))}
        grid.sort(key=lambda r: order[r.sparsity])
    seen, out = set(), []
    for r in grid:
        if r.key not in seen:
            seen.add(r.key)
            out.append(r)
    return out


# ---------------------------------------------------------------- evaluation
def _robust(model, part, attacks, seed) -> tuple[dict[str, Any], torch.Tensor, dict[str, torch.Tensor]]:
    """evaluate() with a fixed seed, returning the per-image clean and per-attack outcomes too."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        res = evaluate(model, part, attacks, batch_size=256, device="cpu", keep_adv=True)
    adv = res.pop("adversarial")
    return res, adv["clean_correct"], adv["robust"]


def _held_out(data: DataBundle, args: argparse.Namespace):
    return data.test.head(args.eval_n) if args.eval_n else data.test


def robust_eval(model: torch.nn.Module, data: DataBundle, args: argparse.Namespace) -> dict[str, Any]:
    """Clean, PGD-20, APGD-CE, then APGD-T on the survivors, all on the same held-out images; validation PGD-20."""
    eps, seed = args.eps_value, args.seed
    part = _held_out(data, args)
    t0 = time.perf_counter()
    res, clean, ok = _robust(model, part, [build_attack(a, eps, seed=seed) for a in ("pgd20", "apgd-ce")], seed)
    survived = clean & ok["pgd20"] & ok["apgd-ce"]
    idx = torch.nonzero(survived).squeeze(1)
    out = {"n": len(part), "clean": res["clean_accuracy"], "pgd20": res["attacks"]["pgd20"]["accuracy"],
           "apgd_ce": res["attacks"]["apgd-ce"]["accuracy"], "warnings": list(res["warnings"])}
    seconds = {a: v["seconds"] for a, v in res["attacks"].items()}
    if len(idx) and args.apgd_t:
        res_t, _, ok_t = _robust(model, part.subset(idx), [build_attack("apgd-t", eps, seed=seed)], seed)
        survived[idx] = ok_t["apgd-t"]
        seconds["apgd-t"] = res_t["attacks"]["apgd-t"]["seconds"]
        out["warnings"] += [w for w in res_t["warnings"] if w not in out["warnings"]]
    out["apgd"] = survived.float().mean().item()
    out["apgd_attacks"] = "pgd20+apgd-ce" + ("+apgd-t" if args.apgd_t else "")
    out["robust_mask"] = "".join("1" if v else "0" for v in survived.tolist())  # per image, for the AA worst case
    out["attack_seconds"] = seconds
    out.update(validation_eval(model, data, args))
    out["eval_seconds"] = time.perf_counter() - t0
    cs = condition_summary(model)
    out.update({k: cs[k] for k in ("sparsity", "kappa_mean", "kappa_max", "singular_layers", "kappa_support_mean",
                                   "kappa_support_max", "lipschitz_bound")})
    out["layers"] = cs["layers"]
    return out


def validation_eval(model: torch.nn.Module, data: DataBundle, args: argparse.Namespace) -> dict[str, Any]:
    """Clean and PGD-20 accuracy on the first `--val-n` validation images (what choices are made on)."""
    t0 = time.perf_counter()
    val_part = data.val.head(args.val_n) if args.val_n else data.val
    val, _, _ = _robust(model, val_part, [build_attack("pgd20", args.eps_value, seed=args.seed)], args.seed)
    return {"val_clean": val["clean_accuracy"], "val_pgd20": val["attacks"]["pgd20"]["accuracy"], "val_n": val["n"],
            "eval_seconds": time.perf_counter() - t0}


def add_autoattack(model: torch.nn.Module, row: dict[str, Any], data: DataBundle, args: argparse.Namespace) -> None:
    """AutoAttack standard on the row's held-out images; 'worst' = per image worst case with the row's other attacks."""
    part = _held_out(data, args)
    res, _, ok = _robust(model, part, [build_attack("aa", args.eps_value, seed=args.seed)], args.seed)
    prior = torch.tensor([c == "1" for c in row["robust_mask"]])
    row["aa"] = res["attacks"]["aa"]["accuracy"]
    row["worst"] = (prior & ok["aa"]).float().mean().item()
    row["attack_seconds"]["aa"] = res["attacks"]["aa"]["seconds"]
    row["warnings"] += [w for w in res["warnings"] if w not in row["warnings"]]


# ---------------------------------------------------------------- one pruning run
def run_row(dense: torch.nn.Module, data: DataBundle, spec: RowSpec, args: argparse.Namespace,
            evaluate_row: Callable[..., dict[str, Any]] = robust_eval) -> tuple[dict[str, Any], torch.nn.Module]:
    """Prune a copy of the dense model as `spec` says and evaluate it (`evaluate_row`: held-out attacks and
    validation by default); returns the row and the pruned model."""
    model = copy.deepcopy(dense)
    pruner = make_pruner(spec.method, sparsity=spec.sparsity, **dict(spec.options))
    lr = args.lr_search if spec.method == "hydra" else args.lr
    cfg = train_config(args, spec.adv, spec.seed)
    job = prune_model(model, data, pruner, cfg, epochs_prune=spec.epochs_prune, epochs_finetune=spec.epochs_finetune,
                      lr=lr, lr_finetune=args.lr, quiet=True)
    history = [{**{k: v for k, v in h.items() if k != "layers"},
                "kappa_layers": {n: s["kappa"] for n, s in h.get("layers", {}).items()}} for h in job["history"]]
    weight_epochs = spec.epochs_finetune + (0 if spec.method == "hydra" else spec.epochs_prune)
    config = pruner.config.as_dict()
    row = {"key": spec.key, "group": spec.group, "method": spec.method, "label": spec.label,
           "options": dict(spec.options), "allocation": config.get("allocation"), "schedule": config.get("schedule"),
           "adv": spec.adv, "epochs_prune": spec.epochs_prune, "epochs_finetune": spec.epochs_finetune,
           "weight_epochs": weight_epochs, "search_epochs": spec.epochs_prune if spec.method == "hydra" else 0,
           "sparsity_target": spec.sparsity, "seed": spec.seed, "config": config, "train_seconds": job["seconds"],
           "epoch_seconds": _epoch_seconds(job["history"]), "phases": job["phases"], "history": history,
           "pattern_skipped": job["pattern_skipped"], "git_commit": git_state().get("commit"),
           "lcc_shrink": job["summary"].get("lcc_shrink"),
           "updates": {k: v for k, v in job["summary"].items() if k != "lcc_shrink"}}
    row.update(evaluate_row(model.eval(), data, args))
    row["seconds"] = row["train_seconds"] + row["eval_seconds"]
    return row, model


# ---------------------------------------------------------------- statistics
def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (for a 95 % interval)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, sample std and the 95 % t-interval half-width (nan below two values)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if not n:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci95": math.nan}
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else math.nan}


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (group, label, sparsity): every metric summarised over the seeds."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["group"], r["label"], r["sparsity_target"]), []).append(r)
    out = []
    for (group, label, sparsity), rs in cells.items():
        first = rs[0]
        entry = {"group": group, "label": label, "method": first["method"], "sparsity_target": sparsity,
                 "seeds": sorted(r["seed"] for r in rs), "allocation": first["allocation"],
                 "schedule": first["schedule"], "adv": first["adv"], "weight_epochs": first["weight_epochs"],
                 "search_epochs": first["search_epochs"], "options": first["options"]}
        for k in (*METRICS, "sparsity", "singular_layers", "kappa_mean", "kappa_support_mean", "seconds"):
            entry[k] = summarise([r[k] for r in rs if k in r])
        out.append(entry)
    return out


def paired(rows: Sequence[dict[str, Any]], group: str, a: str, b: str, sparsity: float,
           metric: str) -> dict[str, Any] | None:
    """Mean difference a - b of `metric` over the seeds both ran (same seed = same data order), with its 95 % CI."""
    by = {(r["label"], r["seed"]): r[metric] for r in rows
          if r["group"] == group and r["sparsity_target"] == sparsity and metric in r}
    seeds = sorted({s for (lab, s) in by if lab == a} & {s for (lab, s) in by if lab == b})
    if not seeds:
        return None
    return {"a": a, "b": b, "metric": metric, "seeds": seeds,
            **summarise([by[(a, s)] - by[(b, s)] for s in seeds])}


def comparisons(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per matched group and sparsity: the best method by mean `metric` against every other one (paired)."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows if r["group"] in ("global", "layer")):
        for sparsity in sorted({r["sparsity_target"] for r in rows if r["group"] == group}):
            means = {e["label"]: e[metric]["mean"] for e in aggregate([r for r in rows if r["group"] == group
                                                                          and r["sparsity_target"] == sparsity])}
            means = {k: v for k, v in means.items() if math.isfinite(v)}
            if len(means) < 2:
                continue
            best = max(means, key=means.get)
            for other in sorted(means, key=means.get, reverse=True)[1:]:
                d = paired(rows, group, best, other, sparsity, metric)
                if d:
                    out.append({"group": group, "sparsity": sparsity, **d})
    return out


def lambda_rows(rows: Sequence[dict[str, Any]], matched: str) -> list[dict[str, Any]]:
    """The lambda ablation's rows, with the matched TSCNC rows (the default lambda) relabelled into it."""
    lam = [r for r in rows if r["group"] == "lambda"]
    sparsities = {r["sparsity_target"] for r in lam}
    default = [{**r, "group": "lambda", "label": f"tscnc lambda={r['config']['lam']:g}",
                "options": {**r["options"], "lam": r["config"]["lam"]}}
               for r in rows if r["group"] == matched and r["method"] == "tscnc" and r["adv"] == "trades"
               and r["sparsity_target"] in sparsities]
    return lam + default


def retention(summary: Sequence[dict[str, Any]], dense: dict[str, Any], metric: str = "apgd"
              ) -> list[dict[str, Any]]:
    """Per matched group and sparsity: the best method by mean `metric` and its ratio to the dense model's."""
    out = []
    cells = {(e["group"], e["sparsity_target"]) for e in summary if e["group"] in ("global", "layer")}
    for group, sparsity in sorted(cells):
        entries = [e for e in summary if (e["group"], e["sparsity_target"]) == (group, sparsity)
                   and math.isfinite(e[metric]["mean"])]
        if entries and dense.get(metric):
            best = max(entries, key=lambda e: e[metric]["mean"])
            out.append({"group": group, "sparsity": sparsity, "best": best["label"], "metric": metric,
                        "value": best[metric]["mean"], "dense": dense[metric],
                        "ratio": best[metric]["mean"] / dense[metric], "seeds": best["seeds"]})
    return out


def lcc_reading(row: dict[str, Any]) -> str:
    """Which reading of L_CC a TSCNC row used (rows made before the option existed: the layer-wise one)."""
    return row["config"].get("lcc", "layer")


def lambda_choice(rows: Sequence[dict[str, Any]], matched: str) -> list[dict[str, Any]]:
    """Per L_CC reading and sparsity: the lambda with the best mean validation PGD-20 (never the held-out split),
    and its held-out numbers."""
    out = []
    lam_rows = lambda_rows(rows, matched)
    for reading, sparsity in sorted({(lcc_reading(r), r["sparsity_target"]) for r in lam_rows}):
        entries = aggregate([r for r in lam_rows if r["sparsity_target"] == sparsity and lcc_reading(r) == reading])
        best = max(entries, key=lambda e: e["val_pgd20"]["mean"])
        out.append({"lcc": reading, "sparsity": sparsity, "lambda": best["options"].get("lam"),
                    "val_pgd20": best["val_pgd20"]["mean"], "pgd20": best["pgd20"]["mean"],
                    "apgd": best["apgd"]["mean"], "seeds": best["seeds"]})
    return out


# ---------------------------------------------------------------- cache
class RowCache:
    """A folder of finished rows (one JSON each, written atomically) plus the settings they were made with."""

    def __init__(self, folder: Path, settings: dict[str, Any], started: str):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "settings.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            # a setting added after the cache was made matches while it is left off
            diff = [k for k in settings if meta["settings"].get(k, None if settings[k] else settings[k]) != settings[k]]
            if diff:
                raise CompressorError(f"--cache {folder} holds rows made with other settings ({', '.join(diff)}): use "
                                      "another --cache folder or the same settings")
            self.started = meta["started_utc"]
        else:
            atomic_write_text(meta_path, to_json({"settings": settings, "started_utc": started}) + "\n")
            self.started = started

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, row: dict[str, Any]) -> None:
        atomic_write_text(self.folder / f"{key}.json", to_json(row) + "\n")
        self.folder.joinpath(f"{key}.claim").unlink(missing_ok=True)

    def claim(self, key: str) -> bool:
        """Reserve row `key` for this process (False: another live process runs it), so that several processes
        with the same command share one grid; a claim whose process has died is taken over."""
        path = self.folder / f"{key}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and (pid == os.getpid() or process_alive(pid)):
                    return pid == os.getpid()
                path.unlink(missing_ok=True)  # a dead process's claim
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False


class MemoryCache(RowCache):
    """No cache folder: rows live for this run only."""

    def __init__(self, started: str):
        self.rows: dict[str, dict] = {}
        self.started = started
        self.folder = None

    def get(self, key):
        return self.rows.get(key)

    def put(self, key, row):
        self.rows[key] = row

    def claim(self, key):
        return True


# ---------------------------------------------------------------- overhead
def _pruner_trainer(model, data, cfg, method, sparsity, phase, epochs_prune, tracker) -> tuple[Trainer, Any]:
    """A Trainer with `method` set up in `phase` exactly as prune_model would (prune first, then fine-tune)."""
    pruner = make_pruner(method, sparsity=sparsity)
    trainer = None
    for ph in ("prune", "finetune")[: 2 if phase == "finetune" else 1]:
        adapter = PrunerCallback(pruner, Phase(ph, epochs_prune, cfg.lr))
        trainer = Trainer(model, data, cfg, [adapter, tracker], quiet=True)
        adapter.on_train_begin(trainer)
        trainer.build_optimizer()
        adapter.on_epoch_begin(trainer, 0)
    return trainer, pruner


def measure_overhead(dense: torch.nn.Module, data: DataBundle, methods: Sequence[str], sparsity: float,
                     args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Per method and phase: median step time vs a plain adversarial step (interleaved), per-epoch hook time."""
    tracker = ConditionTracker()
    rows = []
    plain: dict[str, Trainer] = {}
    setups: dict[str, tuple[str, Trainer, Any]] = {}
    epochs_prune = max(args.epochs_search, args.epochs_admm, 1)
    for method in methods:
        adv = "trades"
        cfg = train_config(args, adv, args.seed, epochs=epochs_prune, lr=0.01)
        if adv not in plain:
            plain[adv] = Trainer(copy.deepcopy(dense), data, cfg, quiet=True)
            plain[adv].build_optimizer()
        for phase in ("prune", "finetune"):
            trainer, pruner = _pruner_trainer(copy.deepcopy(dense), data, cfg, method, sparsity, phase,
                                              epochs_prune, tracker)
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
        pruner.epoch_begin(0)  # the first epoch of the phase: a mask update in the prune phase
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


def _ms(s: dict[str, Any], pct: bool = True) -> str:
    """mean ± std [± CI] of a summary, in percent."""
    if not s or not s["n"]:
        return "-"
    k = 100 if pct else 1
    text = f"{k * s['mean']:.1f}"
    if s["n"] > 1:
        text += f" ± {k * s['std']:.1f} (CI ±{k * s['ci95']:.1f})"
    return text


def _dense_text(res: dict[str, Any]) -> str:
    d, st = res["dense_train"], res["settings"]
    if d.get("source"):
        return f"`{d['arch'] or 'model'}` loaded from `{d['source']}` (pretrained, not trained here)"
    return f"cnn-small (width {st['width']}, hidden {st['hidden']}); dense: TRADES, {st['epochs_dense']} epochs"


GROUP_TITLES = {"global": "matched allocation: global (one threshold), one-shot where the method has a schedule",
                "layer": "matched allocation: per layer (every layer keeps the same fraction)",
                "own": "each method's own defaults (allocation and schedule as registered)",
                "lambda": "TSCNC lambda ablation (at the first matched allocation)",
                "variant": "variants (at the first matched allocation)"}


def render_markdown(res: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    st = res["settings"]
    aa = any("aa" in r for r in res["rows"]) or "aa" in res["dense"]
    lines = markdown_header(f"Robust pruning on {res['dataset']} (protocol v{st.get('protocol', 2)})", res)
    if res.get("note"):
        lines[1:1] = ["", f"> Note: {res['note']}"]
    d = res["dense"]
    lines += [
        f"- data: {res['data_notes']}; splits: fine-tune {res['splits']['train']}, validation {res['splits']['val']}, "
        f"held-out {res['splits']['test']} images",
        f"- model: {_dense_text(res)}; eps {res['eps']:.5g} (L-inf); training attack {st['steps']} steps; "
        f"batch {st['batch_size']}, lr {st['lr']} (HYDRA scores {st['lr_search']}), weight decay {st['weight_decay']}",
        f"- budget: every method trains its weights for {st['epochs_weights']} epochs (ADMM: {st['epochs_admm']} of "
        f"them in its ADMM phase); HYDRA also trains scores for {st['epochs_search']} epochs with frozen weights; "
        "objective TRADES (beta 6) for every row unless it says PGD-AT; checkpoint chosen on validation PGD-10",
        f"- evaluation: the same first {d['n']} held-out images for every row and attack: clean, PGD-20, APGD-CE; "
        "'APGD-CE+T' = per-image worst case of PGD-20, APGD-CE and APGD-T (9 targets, run on the survivors)"
        + ("; AA = AutoAttack standard on the same images, first seed only, where a value is shown" if aa else "")
        + f"; validation PGD-20 on {d.get('val_n')} validation images (used for choices, never the held-out split)",
        f"- seeds: {st['seeds']}; cells show mean ± std over seeds (CI ± = half-width of the 95 % t-interval); "
        f"one seed's held-out binomial standard error at 50 % is ±{50 / math.sqrt(max(d['n'], 1)):.1f} points",
        f"- dense: clean {100 * d['clean']:.1f}, PGD-20 {100 * d['pgd20']:.1f}, APGD-CE {100 * d['apgd_ce']:.1f}, "
        f"APGD-CE+T {100 * d['apgd']:.1f}" + (f", AA {100 * d['aa']:.1f}" if "aa" in d else "")
        + f"; validation PGD-20 {100 * d['val_pgd20']:.1f}", ""]
    entries = res["summary"]
    for group in dict.fromkeys(e["group"] for e in entries):
        lines += [f"## {GROUP_TITLES.get(group, group)}", "",
                  "| method | sparsity | allocation / schedule | objective | epochs (weights + search) | seeds | clean | "
                  "PGD-20 | APGD-CE | APGD-CE+T |" + (" AA |" if aa else "") + " val PGD-20 | singular layers | "
                  "kappa support mean | s / row |",
                  "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if aa else "") + "---|---|---|---|"]
        for e in sorted((e for e in entries if e["group"] == group), key=lambda e: (e["sparsity_target"], e["label"])):
            cells = [e["label"], f"{e['sparsity']['mean']:.4f}", f"{e['allocation']} / {e['schedule']}",
                     "PGD-AT" if e["adv"] == "pgd" else "TRADES", f"{e['weight_epochs']} + {e['search_epochs']}",
                     str(len(e["seeds"])), _ms(e["clean"]), _ms(e["pgd20"]), _ms(e["apgd_ce"]), _ms(e["apgd"])]
            if aa:
                cells.append(_ms(e["aa"]))
            cells += [_ms(e["val_pgd20"]), _f(e["singular_layers"]["mean"], 1), _f(e["kappa_support_mean"]["mean"], 1),
                      f"{e['seconds']['mean']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if res.get("comparisons"):
        lines += ["## Paired differences at matched allocation (APGD-CE+T, points; same seeds)", "",
                  "The best method by mean against each other one: mean difference over seeds ± std, and the 95 % "
                  "t-interval; an interval that contains 0 means no resolved difference.", "",
                  "| allocation | sparsity | best | vs | seeds | difference | 95 % CI |", "|---|---|---|---|---|---|---|"]
        for c in res["comparisons"]:
            ci = (f"[{100 * (c['mean'] - c['ci95']):.1f}, {100 * (c['mean'] + c['ci95']):.1f}]"
                  if math.isfinite(c["ci95"]) else "-")
            lines.append(f"| {c['group']} | {c['sparsity']:g} | {c['a']} | {c['b']} | {len(c['seeds'])} | "
                         f"{100 * c['mean']:+.1f}" + (f" ± {100 * c['std']:.1f}" if math.isfinite(c['std']) else "")
                         + f" | {ci} |")
        lines.append("")
    if res.get("retention"):
        lines += ["## Dense retention (best method's APGD-CE+T / dense)", "",
                  "| allocation | sparsity | best method | seeds | APGD-CE+T | dense | ratio |", "|---|---|---|---|---|---|---|"]
        for r in res["retention"]:
            lines.append(f"| {r['group']} | {r['sparsity']:g} | {r['best']} | {len(r['seeds'])} | "
                         f"{100 * r['value']:.1f} | {100 * r['dense']:.1f} | {r['ratio']:.3f} |")
        lines.append("")
    if res.get("lambda_choice"):
        lines += ["## lambda chosen on validation", "", "| L_CC reading | sparsity | lambda (best mean val PGD-20) | "
                  "val PGD-20 | held-out PGD-20 | held-out APGD-CE+T |", "|---|---|---|---|---|---|"]
        choices = res["lambda_choice"]
        if isinstance(choices, dict):  # protocol v2 reports: {sparsity: choice}, layer-wise reading only
            choices = [{"lcc": "layer", "sparsity": float(k), **c} for k, c in choices.items()]
        for c in choices:
            lines.append(f"| {c['lcc']} | {float(c['sparsity']):g} | {c['lambda']:g} | {100 * c['val_pgd20']:.1f} | "
                         f"{100 * c['pgd20']:.1f} | {100 * c['apgd']:.1f} |")
        lines.append("")
    shrink = [r for r in res["rows"] if r.get("lcc_shrink")]
    if shrink:
        lines += ["## Cumulative shrink caused by L_CC", "",
                  "Per layer, the sum over steps of lr * lambda * ||grad L_CC|| / ||W|| (plain SGD; momentum can "
                  "multiply it by up to 10): how far the term alone pulled each layer's weights. Median and largest "
                  "over layers, first seed.", "", "| row | sparsity | L_CC reading | lambda | median shrink | "
                  "largest shrink (layer) |", "|---|---|---|---|---|---|"]
        for r in shrink:
            if r["seed"] != int(str(st["seeds"]).split(",")[0]):
                continue
            vals = sorted(r["lcc_shrink"].items(), key=lambda kv: kv[1])
            top = vals[-1]
            lines.append(f"| {r['label']} | {r['sparsity_target']:g} | {lcc_reading(r)} | {r['config']['lam']:g} | "
                         f"{vals[len(vals) // 2][1]:.2e} | {top[1]:.2e} ({top[0]}) |")
        lines.append("")
    if res.get("plots"):
        lines += ["## kappa per layer per epoch", "", "Seed " + str(st["seeds"].split(",")[0]) + ", first matched "
                  "allocation: " + ", ".join(f"[{Path(p).stem}]({Path(p).parent.name}/{Path(p).name})"
                                              for p in res["plots"]), ""]
    lines += ["## All rows", "", "| method | group | sparsity | seed | clean | PGD-20 | APGD-CE | APGD-CE+T | AA | "
              "val PGD-20 | kappa mean | singular | kappa support mean | train s | eval s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['label']} | {r['group']} | {r['sparsity']:.4f} | {r['seed']} | {_f(r['clean'])} | "
                     f"{_f(r['pgd20'])} | {_f(r['apgd_ce'])} | {_f(r['apgd'])} | {_f(r.get('aa'))} | "
                     f"{_f(r['val_pgd20'])} | {_f(r['kappa_mean'], 2)} | {r['singular_layers']} | "
                     f"{_f(r['kappa_support_mean'], 2)} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |")
    c = res["cost"]
    lines += ["", "## Cost", "", f"{c['rows_done']} of {c['rows_total']} rows done, {c['row_seconds'] / 60:.1f} min of "
              f"row time in all (training {c['train_seconds'] / 60:.1f} min, evaluation {c['eval_seconds'] / 60:.1f} "
              f"min); a row takes {c['row_seconds_mean']:.0f} s on average on this machine."]
    if c["missing"]:
        lines += [f"Not run yet ({len(c['missing'])} rows, about {c['missing_minutes']:.0f} min at that rate): "
                  + ", ".join(f"`{k}`" for k in c["missing"][:12]) + (" ..." if len(c["missing"]) > 12 else ""),
                  "Re-run the command above to run them: it resumes from the cache."]
    if res.get("overhead"):
        lines += ["", f"## Overhead (goal: an epoch at most {GOAL}x a plain adversarial-training epoch)", "",
                  "Median `Trainer.training_step` time of each phase, interleaved round-robin with a plain TRADES step "
                  "of the same model; the epoch ratio adds the condition-number tracking; 'with epoch-start work' adds "
                  "the phase's `on_epoch_begin` (TSCNC: the Taylor scoring).", "",
                  "| method | phase | adv | step ratio | epoch ratio | with epoch-start work | tracking s | epoch-start s |",
                  "|---|---|---|---|---|---|---|---|"]
        for o in res["overhead"]:
            lines.append(f"| {o['method']} | {o['phase']} | {o['adv']} | {o['step_ratio']:.3f} | "
                         f"{o['epoch_ratio']:.3f} | {o['epoch_ratio_with_update']:.3f} | {o['tracking_seconds']:.3f} | "
                         f"{o['epoch_begin_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def kappa_plots(rows: Sequence[dict[str, Any]], dense: dict[str, Any], folder: Path, group: str,
                seed: int) -> list[str]:
    """kappa of every layer against epoch, one PNG per method and sparsity (one seed, one matched group)."""
    before = {n: float(s["kappa"]) for n, s in dense["layers"].items()}  # JSON holds inf as a string
    paths = []
    for r in rows:
        if r["group"] != group or r["seed"] != seed:
            continue
        history = [{"phase": h.get("phase"), "layers": {n: {"kappa": float(k)} for n, k in h["kappa_layers"].items()}}
                   for h in r["history"] if h.get("kappa_layers")]
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{r['label']}-{r['sparsity_target']:g}")
        title = f"{r['label']} at {r['sparsity']:.1%} ({group} allocation, {r['adv']}, seed {seed})"
        paths.append(str(plot_kappa_epochs(folder / f"{name}.png", history, before, title)))
    return paths


# ---------------------------------------------------------------- main
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
    p.add_argument("--protocol", type=int, default=3, help="protocol version named in the report's title")
    p.add_argument("--note", default="", help="a line for the top of the report (e.g. how the chunks were run)")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--force", action="store_true")
    return p


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether the code the rows ran (compressor/, pruners/, benchmarks/) had local edits."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "compressor", "pruners", "benchmarks"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty_files": [d[3:] for d in dirty if d.strip()]}


def row_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that change what a cached row means (a cache made with others is refused)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k in ROW_SETTINGS for v in [getattr(args, k)]}


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> tuple[dict, Path, Path]:
    """Run what the grid still misses (resuming from --cache), evaluate, and write the report."""
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc)
    args.eps_value = parse_eps(args.eps)
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
        dense_row = robust_eval(dense, data, args)
        cache.put("dense", dense_row)
    report_only = args.max_minutes is not None and args.max_minutes <= 0
    if "dense" in args.aa_rows.split(",") and "aa" not in dense_row and not report_only:
        add_autoattack(dense, dense_row, data, args)
        cache.put("dense", dense_row)
    log(f"dense: clean {dense_row['clean']:.3f}, pgd20 {dense_row['pgd20']:.3f}, apgd {dense_row['apgd']:.3f}")
    matched = next((g.strip() for g in args.allocations.split(",") if g.strip() not in ("", "own")), "global")
    rows, ran = [], 0
    for i, spec in enumerate(grid):
        row = cache.get(spec.key)
        out_of_time = args.max_minutes is not None and time.perf_counter() - t_start > 60 * args.max_minutes
        if args.only_cached and row is None:
            continue
        saved = args.save_models / f"{spec.key}.pt" if args.save_models else None
        where = f"[{i + 1}/{len(grid)}] {spec.label} ({spec.group}) @ {spec.sparsity:g} seed {spec.seed}"
        if row is None and not out_of_time and cache.claim(spec.key):
            row, model = run_row(dense, data, spec, args)
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
    first_group = next((g for g in args.allocations.split(",") if g.strip()), "global").strip()
    seed0 = int(args.seeds.split(",")[0])
    res["plots"] = kappa_plots(rows, dense_row, json_path.with_name(f"{stem}-kappa"), first_group, seed0)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.overhead_steps and methods:
        sparsities = parse_floats(args.sparsities, "--sparsities")
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
