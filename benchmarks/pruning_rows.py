"""One robust-pruning row: the data split and the dense model every row starts from, the pruning run itself, and
its evaluation (held-out attacks on the same images for every row, validation for choices, AutoAttack)."""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from common import git_state
from pruning_grid import RowSpec

from compressor.attacks import Attack, build_attack
from compressor.checkpoint import load_model
from compressor.data import ArraySplit, DataBundle, load_dataset, stratified_indices
from compressor.evaluation import channels_last_weights, evaluate
from compressor.models import create_model
from compressor.parsing import parse_eps, parse_float_list
from compressor.training import TrainConfig, Trainer
from compressor.workflows import model_kwargs
from pruners import ConditionTracker, condition_summary, make_pruner, prune_model


# ---------------------------------------------------------------- data and the dense model
def eps_option(text: str | None) -> float | None:
    """``--eps`` (``0.03``, ``2/255``) as a float; None stays None: the dataset's default."""
    return None if text is None else parse_eps(text, name="--eps")


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
            # the model's own mean/std arguments (arch_kwargs), as before: `load_model(mean=...)` would wrap an
            # import-path model in a Normalize module and rename every layer of the cached rows
            norm = {"mean": parse_float_list(args.mean, name="--mean"),
                    "std": parse_float_list(args.std or "", name="--std")}
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
                          "seconds": result.seconds, "epoch_seconds": epoch_seconds(result.history)}


def train_config(args: argparse.Namespace, adv: str, seed: int, **kw: Any) -> TrainConfig:
    """The TrainConfig of every training run of the grid (CPU, the command's batch, eps, steps, weight decay)."""
    return TrainConfig(batch_size=args.batch_size, adv=adv, eps=args.eps_value, steps=args.steps, val_steps=10,
                       val_n=args.val_n, seed=seed, device="cpu", log_every=10_000, weight_decay=args.weight_decay,
                       **kw)


def epoch_seconds(history: Sequence[dict]) -> float:
    """The median epoch time of a training history (nan when empty)."""
    return statistics.median(h["epoch_seconds"] for h in history) if history else math.nan


# ---------------------------------------------------------------- evaluation
def seeded_evaluate(model: torch.nn.Module, part: ArraySplit, attacks: Sequence[Attack], seed: int
                    ) -> tuple[dict[str, Any], torch.Tensor, dict[str, torch.Tensor]]:
    """`compressor.evaluation.evaluate` with a fixed seed (the caller's RNG left as it was), returning the
    per-image clean and per-attack outcomes too."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        res = evaluate(model, part, attacks, batch_size=256, device="cpu", keep_adv=True)
    adv = res.pop("adversarial")
    return res, adv["clean_correct"], adv["robust"]


def held_out(data: DataBundle, args: argparse.Namespace) -> ArraySplit:
    """The first `--eval-n` held-out images: the same for every row and attack."""
    return data.test.head(args.eval_n) if args.eval_n else data.test


def robust_eval(model: torch.nn.Module, data: DataBundle, args: argparse.Namespace,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Clean, PGD-20, APGD-CE, then APGD-T on the survivors, all on the same held-out images; validation PGD-20.

    `log` gets a line as each stage starts and ends (an fp32 ResNet-20 evaluation takes most of an hour of one core).
    With `--eval-channels-last` the attacks run on channels_last weights (the same numbers up to float rounding)."""
    t0 = time.perf_counter()
    channels_last = bool(getattr(args, "eval_channels_last", False))
    with channels_last_weights(model, channels_last):
        out = _held_out_attacks(model, data, args, log or (lambda _: None))
        out.update(validation_eval(model, data, args))
    out["eval_seconds"], out["eval_channels_last"] = time.perf_counter() - t0, channels_last
    cs = condition_summary(model)
    out.update({k: cs[k] for k in ("sparsity", "kappa_mean", "kappa_max", "singular_layers", "kappa_support_mean",
                                   "kappa_support_max", "lipschitz_bound")})
    out["layers"] = cs["layers"]
    return out


def _held_out_attacks(model: torch.nn.Module, data: DataBundle, args: argparse.Namespace,
                      say: Callable[[str], None]) -> dict[str, Any]:
    """`robust_eval`'s attacks on the held-out images, each stage said as it starts and ends."""
    eps, seed = args.eps_value, args.seed
    part = held_out(data, args)
    say(f"evaluating: clean, PGD-20 and APGD-CE on {len(part)} images")
    res, clean, ok = seeded_evaluate(model, part, [build_attack(a, eps, seed=seed) for a in ("pgd20", "apgd-ce")],
                                     seed)
    survived = clean & ok["pgd20"] & ok["apgd-ce"]
    idx = torch.nonzero(survived).squeeze(1)
    out = {"n": len(part), "clean": res["clean_accuracy"], "pgd20": res["attacks"]["pgd20"]["accuracy"],
           "apgd_ce": res["attacks"]["apgd-ce"]["accuracy"], "warnings": list(res["warnings"])}
    seconds = {a: v["seconds"] for a, v in res["attacks"].items()}
    say(f"evaluated: PGD-20 {out['pgd20']:.3f} ({seconds['pgd20']:.0f}s), APGD-CE {out['apgd_ce']:.3f} "
        f"({seconds['apgd-ce']:.0f}s)" + (f"; APGD-T on the {len(idx)} survivors" if len(idx) and args.apgd_t else ""))
    if len(idx) and args.apgd_t:
        res_t, _, ok_t = seeded_evaluate(model, part.subset(idx), [build_attack("apgd-t", eps, seed=seed)], seed)
        survived[idx] = ok_t["apgd-t"]
        seconds["apgd-t"] = res_t["attacks"]["apgd-t"]["seconds"]
        out["warnings"] += [w for w in res_t["warnings"] if w not in out["warnings"]]
    out["apgd"] = survived.float().mean().item()
    if "apgd-t" in seconds:
        say(f"evaluated: APGD-CE+T {out['apgd']:.3f} ({seconds['apgd-t']:.0f}s)")
    out["apgd_attacks"] = "pgd20+apgd-ce" + ("+apgd-t" if args.apgd_t else "")
    out["robust_mask"] = "".join("1" if v else "0" for v in survived.tolist())  # per image, for the AA worst case
    out["attack_seconds"] = seconds
    return out


def validation_eval(model: torch.nn.Module, data: DataBundle, args: argparse.Namespace) -> dict[str, Any]:
    """Clean and PGD-20 accuracy on the first `--val-n` validation images (what choices are made on)."""
    t0 = time.perf_counter()
    val_part = data.val.head(args.val_n) if args.val_n else data.val
    val, _, _ = seeded_evaluate(model, val_part, [build_attack("pgd20", args.eps_value, seed=args.seed)], args.seed)
    return {"val_clean": val["clean_accuracy"], "val_pgd20": val["attacks"]["pgd20"]["accuracy"], "val_n": val["n"],
            "eval_seconds": time.perf_counter() - t0}


def add_autoattack(model: torch.nn.Module, row: dict[str, Any], data: DataBundle, args: argparse.Namespace) -> None:
    """AutoAttack standard on the row's held-out images; 'worst' = per image worst case with the row's other attacks."""
    part = held_out(data, args)
    res, _, ok = seeded_evaluate(model, part, [build_attack("aa", args.eps_value, seed=args.seed)], args.seed)
    prior = torch.tensor([c == "1" for c in row["robust_mask"]])
    row["aa"] = res["attacks"]["aa"]["accuracy"]
    row["worst"] = (prior & ok["aa"]).float().mean().item()
    row["attack_seconds"]["aa"] = res["attacks"]["aa"]["seconds"]
    row["warnings"] += [w for w in res["warnings"] if w not in row["warnings"]]


# ---------------------------------------------------------------- one pruning run
def run_row(dense: torch.nn.Module, data: DataBundle, spec: RowSpec, args: argparse.Namespace,
            evaluate_row: Callable[..., dict[str, Any]] | None = None, log: Callable[[str], None] | None = None
            ) -> tuple[dict[str, Any], torch.nn.Module]:
    """Prune a copy of the dense model as `spec` says and evaluate it (`evaluate_row`: `robust_eval`, held-out
    attacks and validation, by default); returns the row and the pruned model."""
    model = copy.deepcopy(dense)
    pruner = make_pruner(spec.method, sparsity=spec.sparsity, **dict(spec.options))
    lr = args.lr_search if spec.method == "hydra" else args.lr
    cfg = train_config(args, spec.adv, spec.seed)
    job = prune_model(model, data, pruner, cfg, epochs_prune=spec.epochs_prune, epochs_finetune=spec.epochs_finetune,
                      lr=lr, lr_finetune=args.lr, quiet=args.quiet)
    history = [{**{k: v for k, v in h.items() if k != "layers"},
                "kappa_layers": {n: s["kappa"] for n, s in h.get("layers", {}).items()}} for h in job["history"]]
    weight_epochs = spec.epochs_finetune + (0 if spec.method == "hydra" else spec.epochs_prune)
    config = pruner.config.as_dict()
    row = {"key": spec.key, "group": spec.group, "method": spec.method, "label": spec.label,
           "options": dict(spec.options), "allocation": config.get("allocation"), "schedule": config.get("schedule"),
           "adv": spec.adv, "epochs_prune": spec.epochs_prune, "epochs_finetune": spec.epochs_finetune,
           "weight_epochs": weight_epochs, "search_epochs": spec.epochs_prune if spec.method == "hydra" else 0,
           "sparsity_target": spec.sparsity, "seed": spec.seed, "config": config, "train_seconds": job["seconds"],
           "epoch_seconds": epoch_seconds(job["history"]), "phases": job["phases"], "history": history,
           "pattern_skipped": job["pattern_skipped"], "git_commit": git_state().get("commit"),
           "lcc_shrink": job["summary"].get("lcc_shrink"),
           "updates": {k: v for k, v in job["summary"].items() if k != "lcc_shrink"}}
    row.update(evaluate_row(model.eval(), data, args) if evaluate_row else robust_eval(model.eval(), data, args, log))
    row["seconds"] = row["train_seconds"] + row["eval_seconds"]
    return row, model
