"""The robust-pruning grid: one `RowSpec` per pruning run, each method's recipe at a matched budget, and the rows
of a command line in the order they run (see robust_pruning.py)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from compressor.errors import CompressorError
from compressor.parsing import parse_float_list
from pruners import make_pruner


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
        """The row's name in a cache folder (its file stem): changing it orphans every cached row."""
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        text = f"{self.group}-{self.method}-{opts}-{self.adv}-{self.epochs_prune}+{self.epochs_finetune}"
        return re.sub(r"[^A-Za-z0-9.=+,-]+", "_", f"{text}-s{self.sparsity:g}-seed{self.seed}")

    @property
    def cell(self) -> tuple[str, str, float]:
        """The table cell this row is one seed of."""
        return self.group, self.label, self.sparsity


def names(text: str) -> list[str]:
    """``'a, b,'`` -> ['a', 'b']: the comma-separated names of an option, blanks dropped."""
    return [n.strip() for n in text.split(",") if n.strip()]


def first_matched(allocations: str) -> str:
    """The first matched allocation of ``--allocations`` (global or layer; global when only `own` is given)."""
    return next((a for a in names(allocations) if a != "own"), "global")


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


def _floats(text: str, flag: str) -> list[float]:
    return parse_float_list(text, name=flag, allow_empty=True)


def build_grid(args: argparse.Namespace) -> list[RowSpec]:
    """Every row, in the order they run: matched allocations first, then the ablations and the other groups."""
    methods = names(args.methods)
    sparsities = _floats(args.sparsities, "--sparsities")
    allocations = names(args.allocations)
    for a in allocations:
        if a not in ("global", "layer", "own"):
            raise CompressorError(f"unknown allocation '{a}' in --allocations: choose global, layer or own")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        raise CompressorError("--seeds is empty: give e.g. 0,1,2")
    matched = first_matched(args.allocations)
    lambdas = _floats(args.lambdas, "--lambdas")
    lam_sparsities = _floats(args.lambda_sparsities, "--lambda-sparsities") if args.lambda_sparsities else sparsities
    variants = [parse_variant(v) for v in args.variants.split(";") if v.strip()]
    aa_rows = set(names(args.aa_rows))
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
              for seed in seeds for s in lam_sparsities for lam in _floats(args.lambdas_weight, "--lambdas-weight")]
    var_sparsities = _floats(args.variant_sparsities, "--variant-sparsities") if args.variant_sparsities \
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
