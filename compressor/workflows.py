"""The library's high-level operations; the CLI is a thin layer over these."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import pyautoattack
import torch
from torch import nn

from .attacks import build_attack, preserved_rng
from .budget import MAX_CLASSES
from .checkpoint import (LoadedModel, check_recorded_options, library_versions, load_model, make_provenance,
                         save_checkpoint)
from .data import DataBundle, DatasetInfo, dataset_files, load_dataset
from .errors import CompressorError
from .evaluation import ADV_KEYS_HELP, AttackResult, Evaluation, Progress, evaluate, save_adversarial
from .io import check_output, main_process_lock
from .parsing import check_eps_range, check_seed
from .models import create_model, is_import_path
from .training import Callback, TrainConfig, Trainer, init_distributed, shutdown
from .training.distributed import pick_device


def model_kwargs(info: DatasetInfo, num_classes: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **extra: Any) -> dict[str, Any]:
    """create_model keyword arguments for a dataset (overridable class count and normalisation)."""
    return {"num_classes": num_classes or info.num_classes, "in_chans": info.input_shape[0],
            "mean": list(mean if mean is not None else info.mean), "std": list(std if std is not None else info.std),
            **extra}


def state_path_for(output: str | Path) -> Path:
    """Where the per-epoch training state of a run writing `output` lives."""
    output = Path(output)
    return output.with_name(output.name + ".state")


def train(arch: str, dataset: str, output: str | Path, config: TrainConfig, *, data_root: str | Path | None = None,
          download: bool = False, val_size: float | int | None = None, arch_kwargs: dict | None = None,
          callbacks: Sequence[Callback] = (), force: bool = False, resume: bool = False,
          keep_state: bool = False, quiet: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train `arch` on `dataset` (standard, PGD-AT or TRADES) and save the best-by-validation checkpoint.

    `command` is recorded in the checkpoint's provenance (the CLI passes its command line)."""
    config.validate()
    output = Path(output)
    state = state_path_for(output)
    if resume and not state.is_file():
        raise CompressorError(f"no training state at {state} to resume from: run without `resume` to start afresh")
    check_output(output, force, inputs=dataset_files(dataset))
    if not resume and not force and state.is_file():
        raise CompressorError(f"{state} holds an interrupted run: pass `resume` to continue it, or `force` to start "
                              "afresh")
    with main_process_lock(output):
        return _train(arch, dataset, output, config, data_root=data_root, download=download, val_size=val_size,
                      arch_kwargs=arch_kwargs, callbacks=callbacks, force=force, resume=resume,
                      keep_state=keep_state, quiet=quiet, command=command)


def _train(arch: str, dataset: str, output: Path, config: TrainConfig, *, data_root, download, val_size, arch_kwargs,
           callbacks, force, resume, keep_state, quiet, command=None) -> dict[str, Any]:
    state = state_path_for(output)
    ctx = init_distributed(config.device)
    try:
        data = load_dataset(dataset, data_root, download=download, val_size=val_size, seed=config.seed)
        torch.manual_seed(config.seed)
        kwargs = model_kwargs(data.info, **(arch_kwargs or {}))
        model = create_model(arch, **kwargs)
        trainer = Trainer(model, data, config, callbacks, state_path=state, ctx=ctx, quiet=quiet,
                          settings={"arch": arch, "arch_kwargs": kwargs, "val_size": val_size})
        result = trainer.fit(resume=resume)
        report = {"arch": arch, "dataset": data.info.name, "output": str(output), "best_epoch": result.best_epoch,
                  "best": result.best_metrics, "history": result.history, "seconds": result.seconds,
                  "world_size": ctx.world_size, "device": str(ctx.device), "config": asdict(trainer.config)}
        if ctx.is_main:
            save_checkpoint(output, trainer.model, arch=arch, arch_kwargs=kwargs, dataset=data.info.as_dict(),
                            provenance=make_provenance(config.seed, result.best_metrics, train_config=asdict(trainer.config),
                                                       best_epoch=result.best_epoch, command=command),
                            force=force)
            if not keep_state:
                state.unlink(missing_ok=True)
        return report
    finally:
        shutdown(ctx)


def open_model(path: str | Path, *, dataset: str | None = None, data_root: str | Path | None = None,
               download: bool = False, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
               num_classes: int | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, no_normalize: bool = False, trust_pickle: bool = False,
               trust_code: bool = False, trust_program: bool = False,
               seed: int = 0) -> tuple[LoadedModel, DataBundle | None]:
    """Load a model file and, when a dataset is named or recorded in the checkpoint, its data.

    `arch` builds a plain state dict: a zoo name (classes and channels from the dataset), ``tv:``/``timm:``
    names, or ``module:callable`` with `arch_kwargs`. The input normalisation is the file's own, or `mean`/`std`,
    or none with `no_normalize`; it is never taken from the dataset (see `load_model`).
    """
    if num_classes is not None and num_classes < 1:
        raise CompressorError(f"`num_classes` must be at least 1, got {num_classes}")
    if num_classes is not None and num_classes > MAX_CLASSES:
        raise CompressorError(f"`num_classes` {num_classes:,} is more than the {MAX_CLASSES:,} classes compressor "
                              "builds a classifier for: give the dataset's class count")
    data = None
    if dataset is not None:
        data = load_dataset(dataset, data_root, download=download, seed=seed)
    kwargs = dict(arch_kwargs or {})
    if arch is not None and is_import_path(arch):
        if num_classes is not None:
            kwargs.setdefault("num_classes", num_classes)
    elif arch is not None:
        if data is None and not {"num_classes", "in_chans"} <= set(kwargs):
            raise CompressorError(f"`arch` {arch} needs `dataset` so the number of classes and input channels are "
                                  "known")
        if data is not None:
            kwargs = {"num_classes": num_classes or data.info.num_classes, "in_chans": data.info.input_shape[0],
                      **kwargs}
    loaded = load_model(path, arch=arch, arch_kwargs=kwargs, trust_pickle=trust_pickle, trust_code=trust_code,
                        mean=mean, std=std, no_normalize=no_normalize, trust_program=trust_program)
    check_recorded_options(loaded, arch_kwargs=arch_kwargs, num_classes=num_classes, mean=mean, std=std,
                           no_normalize=no_normalize)
    ck = loaded.checkpoint
    if data is None and ck is not None and ck.dataset.get("name"):
        data = load_dataset(ck.dataset["name"], data_root, download=download, seed=seed)
    return loaded, data


def evaluate_model(model: nn.Module | Callable[[torch.Tensor], Any], data: DataBundle, attacks: Sequence[str], *,
                   eps: float | None = None, norm: str = "linf", n: int | None = None, batch_size: int = 256,
                   split: str = "test", seed: int = 0, device: str = "auto", progress: Progress | None = None,
                   save_adv: str | Path | None = None, force: bool = False,
                   normalization: dict[str, Any] | None = None) -> Evaluation:
    """Clean and robust accuracy of `model` on a split of `data` (eval mode, fp32, fixed seed), with the protocol.

    `split` is test, val, train or all (every image of the dataset file); `normalization` (what the model
    applies to its [0, 1] input, e.g. ``LoadedModel.normalization``) is recorded in the report.

    The global RNG state (CPU and CUDA) is restored afterwards. With `save_adv`, the adversarial
    examples of every attack are written there as an .npz (see `compressor.evaluation.ADV_KEYS_HELP`);
    an existing file is refused unless `force`.
    """
    eps = data.info.default_eps if eps is None else check_eps_range(eps, norm)
    check_seed(seed)
    built = list({a.name: a for a in (build_attack(spec, eps, norm, seed=seed) for spec in attacks)}.values())
    if batch_size < 1:
        raise CompressorError(f"`batch_size` must be >= 1, got {batch_size}")
    if n is not None and n < 1:
        raise CompressorError(f"`n` must be >= 1, got {n}: leave it out to evaluate the whole split")
    if save_adv is not None:
        check_output(save_adv, force)
    part = data.split(split)
    note = None
    if n is not None and n > len(part):
        whole = "" if split == "all" else (f" ({len(part)} of the dataset's {data.size()} images; --split all "
                                           "evaluates every one)")
        note = f"--n {n} is larger than the {split} split{whole}; using all {len(part)} samples"
        n = len(part)
    dev = pick_device(device)
    if isinstance(model, nn.Module):
        model = model.to(dev).float()
    with preserved_rng(dev):
        torch.manual_seed(seed)  # CPU and every CUDA device
        res = evaluate(model, part, built, batch_size=batch_size, n=n, device=dev, progress=progress,
                       keep_adv=save_adv is not None)
    adversarial = res.pop("adversarial", None)
    protocol = {"dataset": data.info.name, "split": split, "split_description": data.describe(split),
                "n": res["n"], "norm": norm, "eps": eps, "seed": seed, "batch_size": batch_size, "device": str(dev),
                "model_mode": "eval", "dtype": "float32",
                "normalization": normalization or {"source": "not recorded by the caller"},
                "attacks": {a.name: a.protocol() for a in built},
                "versions": {**library_versions(), "pyautoattack": pyautoattack.__version__}}
    saved = None
    if save_adv is not None:
        save_adversarial(save_adv, adversarial, protocol)
        saved = {"path": str(save_adv), "keys": ADV_KEYS_HELP}
    return Evaluation(n=res["n"], clean_accuracy=res["clean_accuracy"], clean_images_per_s=res["clean_images_per_s"],
                      attacks={k: AttackResult(**r) for k, r in res["attacks"].items()},
                      worst_case_accuracy=res.get("worst_case_accuracy"), warnings=res["warnings"],
                      dataset=data.info.name, split=split, eps=eps, norm=norm, seed=seed,
                      normalization=protocol["normalization"], device=str(dev), protocol=protocol, note=note,
                      adversarial_file=saved)
