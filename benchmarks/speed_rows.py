"""The rows of speed_targets.py: the dense model's adversarial adaptation, the channel ratio searched for each
measured speed target, and one robust channel-pruning run (remove, fine-tune, evaluate, time)."""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pruning_rows import epoch_seconds, robust_eval, train_config
from row_cache import RowCache

from compressor.data import DataBundle
from compressor.environment import load_average, machine_info
from compressor.errors import CompressorError
from compressor.flops import count_macs
from compressor.io import atomic_write, file_digest
from compressor.parsing import parse_float_list
from compressor.registry import RUNTIMES
from compressor.training import TrainConfig, Trainer
from compressor.workflows import open_model
from pruners import make_pruner, prune_model
from pruners.targets import SpeedOutOfReach, ratio_for_speedup
from pruners.transforms import TransformContext, apply_transforms
from pruners.transforms.channels import Channels

ADAPTED = "dense-adapted.pt"  # the adapted dense weights, in the cache folder
ADAPTING = "dense-adapt.state"  # the adaptation's training state after its last finished epoch, until it is done


def load_dense(args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The --dense model opened as `compressor eval` opens it (its own normalisation, or --mean/--std)."""
    mean = parse_float_list(args.mean, name="--mean") if args.mean else None
    std = parse_float_list(args.std, name="--std") if args.std else None
    loaded, _ = open_model(args.dense, arch=args.arch, mean=mean, std=std, no_normalize=args.no_normalize)
    arch = loaded.checkpoint.arch if loaded.checkpoint is not None else args.arch
    return loaded.model.eval(), {"source": str(args.dense), "arch": arch, "normalization": loaded.normalization}


def speed_train_config(args: argparse.Namespace, seed: int, **kw: Any) -> TrainConfig:
    """TRADES as the grid trains, in bf16 autocast with channels_last under --bf16 (evaluation stays fp32)."""
    fast = {"amp": "bf16", "channels_last": "on"} if args.bf16 else {}
    return train_config(args, "trades", seed, **fast, **kw)


def adapt_dense(dense: torch.nn.Module, data: DataBundle, args: argparse.Namespace, cache: RowCache,
                log: Callable[[str], None], allowed: bool = True) -> dict[str, Any]:
    """TRADES-fine-tune `dense` in place for --adapt-epochs (best on validation), or load the cached result."""
    saved = cache.folder / ADAPTED if cache.folder is not None else None
    row = cache.get("adapt")
    if row is not None and saved is not None and saved.is_file():
        dense.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
        return row
    if not allowed:
        raise CompressorError(f"the dense model's adaptation is not in {cache.folder} yet: run without --max-minutes "
                              "first")
    cfg = speed_train_config(args, args.seed, epochs=args.adapt_epochs, lr=args.lr_adapt)
    torch.manual_seed(args.seed)
    state = cache.folder / ADAPTING if cache.folder is not None else None
    resume = state is not None and state.is_file()  # an adaptation longer than a session goes on where it stopped
    log(f"dense: adapting with TRADES for {args.adapt_epochs} epochs" + (f" (resuming {state})" if resume else ""))
    result = Trainer(dense.train(), data, cfg, quiet=args.quiet, state_path=state,
                     settings={"source_model": file_digest(args.dense)}).fit(resume=resume)
    dense.eval()
    row = {"epochs": args.adapt_epochs, "lr": args.lr_adapt, "best_epoch": result.best_epoch,
           "seconds": result.seconds, "epoch_seconds": epoch_seconds(result.history), "resumed": resume,
           "best": {k: v for k, v in result.best_metrics.items() if k != "layers"}}
    if saved is not None:
        atomic_write(saved, lambda p: torch.save(dense.state_dict(), p))
    cache.put("adapt", row)
    if state is not None:
        state.unlink(missing_ok=True)  # the adapted weights above replace it
    log(f"dense adapted: {args.adapt_epochs} epochs, best {result.best_epoch}, {result.seconds:.0f}s")
    return row


def channels_of(args: argparse.Namespace, ratio: float | None, **options: Any) -> Channels:
    """The benchmark's `channels` transform at `ratio`: its rounding and shortcut handling from the command line."""
    return Channels(ratio, round_to=args.round_to, shortcuts="keep" if args.keep_shortcuts else "select", **options)


def search_target(dense: torch.nn.Module, input_shape: tuple[int, ...], speedup: float, batch_sizes: Sequence[int],
                  args: argparse.Namespace, cache: RowCache, log: Callable[[str], None],
                  allowed: bool = True) -> dict[str, Any] | None:
    """The channel ratio measured to make `dense` `speedup` times faster (cached), or why it is out of reach."""
    key = f"target-x{speedup:g}"
    row = cache.get(key)
    if row is not None or not allowed:
        return row
    t0 = time.perf_counter()
    channels = channels_of(args, None)
    try:
        row = ratio_for_speedup(dense, channels, speedup, input_shape, runtime=args.runtime, batch_sizes=batch_sizes)
        trial = _removed(dense, channels, row["ratio"], input_shape)
        row["macs_fraction"] = count_macs(trial, input_shape) / count_macs(dense, input_shape)
        row["shapes"] = layer_shapes(trial)
        row["load_average"] = load_average()
    except CompressorError as exc:
        row = {"kind": "speedup", "target": speedup, "ratio": None, "error": str(exc)}
        if isinstance(exc, SpeedOutOfReach):  # what the most pruned architecture measured, for other CPUs' reports
            row["limit"] = {**exc.limit, "shapes": layer_shapes(_removed(dense, channels, exc.limit["ratio"],
                                                                         input_shape))}
    row["seconds"], row["machine"] = time.perf_counter() - t0, machine_info("cpu")  # latency holds for this CPU only
    cache.put(key, row)
    log(f"target {speedup:g}x: " + (f"ratio {row['ratio']:.3f}" if row["ratio"] else row["error"]))
    return row


def _removed(dense: torch.nn.Module, channels: Channels, ratio: float, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """A copy of `dense` without `ratio` of its channels (the layers the search kept at full width kept)."""
    trial = copy.deepcopy(dense)
    kept = channels.kept_layers(dense, input_shape)  # the search found them already: cached by `channels`
    channels.remove(trial, ratio, input_shape, [trial.get_submodule(n) for n in kept])
    return trial


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """Every weight tensor's shape by name: the whole of what an ONNX Runtime CPU latency depends on here."""
    return {n: list(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}


def speed_row(dense: torch.nn.Module, data: DataBundle, target: dict[str, Any], importance: str, seed: int,
              batch_sizes: Sequence[int], args: argparse.Namespace, state_prefix: Path | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Remove the target's ratio of channels by `importance`, fine-tune with TRADES, evaluate and time the result.

    With `state_prefix` the fine-tuning keeps a per-epoch state beside it and an interrupted row goes on from its
    last finished epoch (the removal is redone first: it gives the same layer shapes, and the state the weights)."""
    shape = tuple(data.info.input_shape)
    model = copy.deepcopy(dense)
    cfg = speed_train_config(args, seed, epochs=args.epochs, lr=args.lr)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    channels = channels_of(args, target["ratio"], importance=importance, score_epochs=args.score_epochs)
    entry = apply_transforms(model, [channels], TransformContext(shape, data=data, config=cfg))[0]
    transform_seconds = time.perf_counter() - t0
    resumed = bool(_row_states(state_prefix))
    job = prune_model(model, data, make_pruner("none"), cfg, epochs_prune=0, epochs_finetune=args.epochs,
                      lr_finetune=args.lr, quiet=args.quiet, track=False, state_prefix=state_prefix, resume=True,
                      settings={"importance": importance, "ratio": target["ratio"]})
    row = {"importance": importance, "target": target["target"], "ratio": target["ratio"], "seed": seed,
           "epochs": args.epochs, "resumed": resumed, "transform_seconds": transform_seconds,
           "train_seconds": job["seconds"],
           "epoch_seconds": epoch_seconds(job["history"]), "phases": job["phases"],
           "macs_fraction": count_macs(model, shape) / count_macs(dense, shape),
           "params_fraction": _parameters(model) / _parameters(dense),
           "kept_coupled": entry.get("kept_coupled")}
    row.update(robust_eval(model.eval(), data, args, log))
    t1 = time.perf_counter()
    if not args.time_rows and layer_shapes(model) == target.get("shapes"):
        # dense kernels: same shapes, same latency; the target's timing was taken when the machine was quiet
        row["speed"], row["speed_source"] = target["measured"], "target search (same layer shapes)"
        row["speed_machine"] = target.get("machine")
    else:
        measured = RUNTIMES.get(args.runtime)(dense.eval(), model, input_shape=shape, batch_sizes=list(batch_sizes))
        row["speed"], row["speed_source"] = {str(b): m for b, m in measured.items()}, "this row"
        row["speed_machine"] = machine_info("cpu")
    row["speed_seconds"] = time.perf_counter() - t1
    row["seconds"] = time.perf_counter() - t0
    for state in _row_states(state_prefix):
        state.unlink()  # the finished row replaces its training state
    return row


def _row_states(prefix: Path | None) -> list[Path]:
    """The per-phase training states `prune_model` keeps beside `prefix` (`pruners.workflow.phase_state_path`)."""
    return sorted(prefix.parent.glob(f"{prefix.name}.*.state")) if prefix is not None else []
