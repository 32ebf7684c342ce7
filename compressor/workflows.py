"""The library's high-level operations; the CLI is a thin layer over these."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import pyautoattack
import torch
from torch import nn

from .attacks import Attack, preserved_rng
from .checkpoint import (LoadedModel, check_recorded_options, library_versions, load_model, make_provenance,
                         save_checkpoint)
from .data import DataBundle, DatasetInfo
from .errors import CompressorError
from .evaluation import ADV_KEYS_HELP, AttackResult, Evaluation, Progress, evaluate, save_adversarial
from .io import check_output, main_process_lock
from .jobs import DataSource, EvalOptions, ModelSource, TrainJob, state_path_for  # noqa: F401
from .settings import gather, job_from
from .models import create_model, is_import_path
from .training import TrainConfig, Trainer, init_distributed, shutdown
from .training.distributed import pick_device


def model_kwargs(info: DatasetInfo, num_classes: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **extra: Any) -> dict[str, Any]:
    """create_model keyword arguments for a dataset (overridable class count and normalisation)."""
    return {"num_classes": num_classes or info.num_classes, "in_chans": info.input_shape[0],
            "mean": list(mean if mean is not None else info.mean), "std": list(std if std is not None else info.std),
            **extra}


def train(job: TrainJob | str | None = None, dataset: str | None = None, output: str | Path | None = None,
          config: TrainConfig | None = None, /, **fields: Any) -> dict[str, Any]:
    """Train `arch` on `dataset` (standard, PGD-AT or TRADES) and save the best-by-validation checkpoint.

    Takes a `TrainJob`, or ``arch, dataset, output, config`` and the job's other fields by name (`TrainJob`,
    `DataSource`, `RunOptions`), e.g. ``train("cnn-small", "digits", "m.pt", TrainConfig(), quiet=True)``."""
    job = job_from(TrainJob, "train", job, {"arch": job, "dataset": dataset, "output": output, "config": config},
                   fields)
    output = job.run.output
    job.run.check_resumable([job.state], f"no training state at {job.state} to resume from: run without `resume` "
                                         "to start afresh")
    check_output(output, job.run.force, inputs=job.data.files())
    job.run.check_interrupted([job.state])
    with main_process_lock(output):
        return _train(job)


def _train(job: TrainJob) -> dict[str, Any]:
    """`train` once its job is checked and its output is locked."""
    config, run = job.config, job.run
    ctx = init_distributed(config.device)
    try:
        data = job.data.load(config.seed)
        torch.manual_seed(config.seed)
        kwargs = model_kwargs(data.info, **(job.arch_kwargs or {}))
        model = create_model(job.arch, **kwargs)
        trainer = Trainer(model, data, config, job.callbacks, state_path=job.state, ctx=ctx, quiet=run.quiet,
                          settings={"arch": job.arch, "arch_kwargs": kwargs, "val_size": job.data.val_size})
        result = trainer.fit(resume=run.resume)
        report = {"arch": job.arch, "dataset": data.info.name, "output": str(run.output),
                  "best_epoch": result.best_epoch, "best": result.best_metrics, "history": result.history,
                  "seconds": result.seconds, "world_size": ctx.world_size, "device": str(ctx.device),
                  "config": asdict(trainer.config)}
        if ctx.is_main:
            save_checkpoint(run.output, trainer.model, arch=job.arch, arch_kwargs=kwargs, dataset=data.info.as_dict(),
                            provenance=make_provenance(config.seed, result.best_metrics,
                                                       train_config=asdict(trainer.config),
                                                       best_epoch=result.best_epoch, command=run.command),
                            force=run.force)
            if not run.keep_state:
                job.state.unlink(missing_ok=True)
        return report
    finally:
        shutdown(ctx)


def open_model(source: ModelSource | str | Path | None = None, data: DataSource | None = None, /, *, seed: int = 0,
               **fields: Any) -> tuple[LoadedModel, DataBundle | None]:
    """Load a model file and, when a dataset is named or recorded in the checkpoint, its data.

    Takes a `ModelSource` (or a path and its fields by name: `arch`, `mean`, `trust_pickle`, ...) and a
    `DataSource` (or its fields: `dataset`, `data_root`, `download`). `arch` builds a plain state dict: a zoo name
    (classes and channels from the dataset), ``tv:``/``timm:`` names, or ``module:callable`` with `arch_kwargs`.
    The input normalisation is the file's own, or `mean`/`std`, or none with `no_normalize`; it is never taken
    from the dataset (see `load_model`).
    """
    if source is not None and not isinstance(source, ModelSource):
        if "path" in fields:
            raise TypeError("open_model() got multiple values for argument 'path'")
        fields["path"] = source
        source = None
    parts = gather("open_model", fields, {"source": (ModelSource, source), "data": (DataSource, data)})
    source, data_source = parts["source"], parts["data"]
    if source.path is None:
        raise TypeError("open_model() needs the model file: a path, or a ModelSource with its `path`")
    data = data_source.load(seed) if data_source.dataset is not None else None
    kwargs = dict(source.arch_kwargs or {})
    arch, num_classes = source.arch, source.num_classes
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
    loaded = load_model(source.path, arch=arch, arch_kwargs=kwargs, trust_pickle=source.trust_pickle,
                        trust_code=source.trust_code, mean=source.mean, std=source.std,
                        no_normalize=source.no_normalize, trust_program=source.trust_program)
    check_recorded_options(loaded, arch_kwargs=source.arch_kwargs, num_classes=num_classes, mean=source.mean,
                           std=source.std, no_normalize=source.no_normalize)
    ck = loaded.checkpoint
    if data is None and ck is not None and ck.dataset.get("name"):
        data = data_source.load(seed, name=ck.dataset["name"])
    return loaded, data


def evaluate_model(model: nn.Module | Callable[[torch.Tensor], Any], data: DataBundle,
                   attacks: Sequence[str | Attack], options: EvalOptions | None = None, /, *,
                   progress: Progress | None = None, normalization: dict[str, Any] | None = None,
                   **fields: Any) -> Evaluation:
    """Clean and robust accuracy of `model` on a split of `data` (eval mode, fp32, fixed seed), with the protocol.

    `attacks` are names (``pgd20``, built at the budget) or built attacks; `options` is an `EvalOptions`, or its
    fields by name (`eps`, `norm`, `n`, `split`, `seed`, `save_adv`, ...). `normalization` (what the model applies
    to its [0, 1] input, e.g. ``LoadedModel.normalization``) is recorded in the report.

    The global RNG state (CPU and CUDA) is restored afterwards. With `save_adv`, the adversarial examples of every
    attack are written there as an .npz (see `compressor.evaluation.ADV_KEYS_HELP`).
    """
    options = gather("evaluate_model", fields, {"options": (EvalOptions, options)})["options"]
    eps, split, n = options.budget(data), options.split, options.n
    built = options.attacks(attacks, data)
    part = data.split(split)
    note = None
    if n is not None and n > len(part):
        whole = "" if split == "all" else (f" ({len(part)} of the dataset's {data.size()} images; --split all "
                                           "evaluates every one)")
        note = f"--n {n} is larger than the {split} split{whole}; using all {len(part)} samples"
        n = len(part)
    dev = pick_device(options.device)
    if isinstance(model, nn.Module):
        model = model.to(dev).float()
    channels_last = options.channels_last == "on" or (options.channels_last == "auto" and dev.type == "cuda")
    with preserved_rng(dev):
        torch.manual_seed(options.seed)  # CPU and every CUDA device
        res = evaluate(model, part, built, batch_size=options.batch_size, n=n, device=dev, progress=progress,
                       keep_adv=options.save_adv is not None, channels_last=channels_last)
    adversarial = res.pop("adversarial", None)
    protocol = {"dataset": data.info.name, "split": split, "split_description": data.describe(split),
                "n": res["n"], "norm": options.norm, "eps": eps, "seed": options.seed,
                "batch_size": options.batch_size, "device": str(dev), "model_mode": "eval", "dtype": "float32",
                "memory_format": "channels_last" if res["channels_last"] else "contiguous",
                "normalization": normalization or {"source": "not recorded by the caller"},
                "attacks": {a.name: a.protocol() for a in built},
                "versions": {**library_versions(), "pyautoattack": pyautoattack.__version__}}
    saved = None
    if options.save_adv is not None:
        save_adversarial(options.save_adv, adversarial, protocol)
        saved = {"path": str(options.save_adv), "keys": ADV_KEYS_HELP}
    return Evaluation(n=res["n"], clean_accuracy=res["clean_accuracy"], clean_images_per_s=res["clean_images_per_s"],
                      attacks={k: AttackResult(**r) for k, r in res["attacks"].items()},
                      worst_case_accuracy=res.get("worst_case_accuracy"), warnings=res["warnings"],
                      dataset=data.info.name, split=split, eps=eps, norm=options.norm, seed=options.seed,
                      normalization=protocol["normalization"], device=str(dev), protocol=protocol, note=note,
                      adversarial_file=saved)
