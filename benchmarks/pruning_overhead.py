"""The overhead table of robust_pruning.py: each method's pruning and fine-tuning steps timed against a plain
adversarial-training step of the same model."""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from pruning_rows import train_config

from compressor.data import DataBundle
from compressor.training import Trainer
from pruners import ConditionTracker, make_pruner
from pruners.base import Phase
from pruners.callback import PrunerCallback

GOAL = 1.15  # a pruning or fine-tuning epoch costs at most 1.15x a plain adversarial-training epoch


def _pruner_trainer(model, data, cfg, method, sparsity, phase, epochs_prune, tracker) -> tuple[Trainer, Any]:
    """A started Trainer with `method` in the first epoch of `phase` (the prune phase first, as prune_model runs it)."""
    pruner = make_pruner(method, sparsity=sparsity)
    trainer = None
    for ph in ("prune", "finetune")[: 2 if phase == "finetune" else 1]:
        adapter = PrunerCallback(pruner, Phase(ph, epochs_prune, cfg.lr))
        trainer = Trainer(model, data, cfg, [adapter, tracker], quiet=True)
        trainer.start()
        trainer.begin_epoch()
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
            plain[adv].start()
            plain[adv].begin_epoch()
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
