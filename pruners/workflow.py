"""Pruning jobs: `prune_model` runs a pruner's phases on a model in memory; `prune` does a checkpoint file end
to end (evaluate, prune, fine-tune, evaluate, save with metadata, plots)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from compressor.checkpoint import PICKLED_ARCH, Checkpoint, LoadedModel, make_provenance, save_checkpoint
from compressor.flops import size_change, size_report
from compressor.data import DataBundle, dataset_files
from compressor.errors import CompressorError
from compressor.evaluation import Evaluation
from compressor.io import check_output, file_digest, main_process_lock
from compressor.models import is_import_path
from compressor.sanity import check_finite_weights, check_model_fits_data
from compressor.registry import PRUNERS, RUNTIMES
from compressor.training import Callback, TrainConfig, Trainer, init_distributed, shutdown
from compressor.training.engine import check_fingerprints, read_state
from compressor.workflows import evaluate_model, open_model

from .base import Pruner
from .report import PruneReport, structural_summary
from .callback import PrunerCallback
from .monitor import ConditionTracker, condition_summary
from .plots import plot_kappa_epochs, plot_kappa_layers
from .targets import DEFAULT_BATCH_SIZES, check_target, ratio_for_macs, ratio_for_speedup
from .transforms import TransformContext, apply_transforms, check_recorded, parse_transforms
from .transforms.base import split_spec
from .transforms.channels import NEEDS_RATIO, Channels

PHASES = ("prune", "finetune")
DEFAULT_SPARSITY = 0.9  # `compressor prune MODEL --method M` without --sparsity or an N:M --pattern
LAYER_STATS = ("kappa", "kappa_support", "rank", "sigma_max", "sigma_min", "frobenius")


def make_pruner(method: str, **options: Any) -> Pruner:
    """The registered pruner `method` configured with `options` (unknown names are one-line errors)."""
    return PRUNERS.get(method)(**options)


def check_prunes(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Refuse a `sparsity` that prunes nothing (the job would only fine-tune); return `options`."""
    if method != "none" and options.get("sparsity") is not None and not options["sparsity"] > 0:
        raise CompressorError(f"`sparsity` {options['sparsity']} prunes nothing (it would only fine-tune): give a "
                              "target between 0 and 1, e.g. 0.9, or use `method` none with a `transforms`")
    return options


def phase_state_path(output: str | Path, phase: str) -> Path:
    """Where the per-epoch training state of one phase of a job writing `output` lives."""
    output = Path(output)
    return output.with_name(f"{output.name}.{phase}.state")


def prune_model(model: nn.Module, data: DataBundle, pruner: Pruner, config: TrainConfig, *, epochs_prune: int,
                epochs_finetune: int, lr: float | None = None, lr_finetune: float | None = None,
                state_prefix: str | Path | None = None, resume: bool = False, callbacks: Sequence[Callback] = (),
                track: bool = True, ctx=None, quiet: bool = False, console=None,
                settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `pruner`'s phases (one Trainer each) on `model`, fold the masks in, and return what happened.

    With `state_prefix`, each phase keeps a per-epoch state beside it for `resume`; a finished phase
    is replayed from its state (no training) so that the next one starts exactly where it started.
    The state records the pruner, its options and `settings` (e.g. the transforms and the source model):
    resuming with other values is refused.
    """
    phases = pruner.plan(epochs_prune, epochs_finetune, lr, lr_finetune)
    pruner.attach(model)
    extra = [ConditionTracker()] if track else []
    torch.manual_seed(config.seed)  # a resumed job replays to the same state, so this is the same for both
    runs, history = [], []
    t0 = time.perf_counter()
    for phase in phases:
        cfg = replace(config, epochs=phase.epochs, lr=phase.lr, select=phase.select or config.select)
        state = phase_state_path(state_prefix, phase.name) if state_prefix is not None else None
        if console is not None and not quiet:
            console.print(f"{pruner.name}: {phase.name} phase, {phase.epochs} epochs, lr {phase.lr:g}")
        adapter = PrunerCallback(pruner, phase)
        trainer = Trainer(model, data, cfg, [adapter, *extra, *callbacks], state_path=state, ctx=ctx, quiet=quiet,
                          console=console, settings={"method": pruner.name, "pruner": pruner.config.as_dict(),
                                                     "phase": phase.name, **(settings or {})},
                          lr_option="lr" if phase.name == "prune" else "lr_finetune")
        result = trainer.fit(resume=bool(resume and state is not None and state.is_file()))
        history += [{"phase": phase.name, **h} for h in result.history]
        runs.append({"phase": phase.name, "epochs": phase.epochs, "lr": phase.lr, "select": trainer.config.selection,
                     "best_epoch": result.best_epoch, "seconds": result.seconds,
                     "best": {k: v for k, v in result.best_metrics.items() if k != "layers"}})
    done = pruner.squash_mask()
    return {"method": pruner.name, "phases": runs, "history": history, "seconds": time.perf_counter() - t0, **done}


def _accuracies(res: Evaluation) -> dict[str, float]:
    out = {"clean_accuracy": res.clean_accuracy}
    out.update({f"{k}_accuracy": v.accuracy for k, v in res.attacks.items()})
    return out


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def default_output(model_path: str | Path, tag: str, resume: bool = False) -> Path:
    """``MODEL.<tag>.pt`` beside the input, or ``MODEL.<tag>-2.pt``, ... : never an existing file (with `resume`,
    the first one whose interrupted job left its phase states)."""
    model_path = Path(model_path)
    for k in range(1, 10_000):
        path = model_path.with_name(f"{model_path.stem}.{tag}{'' if k == 1 else f'-{k}'}.pt")
        states = any(phase_state_path(path, p).is_file() for p in PHASES)
        if (resume and states) or (not resume and not path.exists() and not states):
            return path
        if resume and not path.exists():
            break
    raise CompressorError(f"no pruning state beside {model_path} to resume from: run without `resume` to start "
                          "afresh" if resume else f"no free output name beside {model_path}: pass -o PATH")


def _tag(method: str, sparsity: float | None) -> str:
    """``tscnc90`` for TSCNC at 0.9 sparsity."""
    return f"{method}{sparsity * 100:.4g}".replace(".", "p") if sparsity else method


def _outside_checkpoint(loaded: LoadedModel, model_path: str | Path) -> Checkpoint:
    """What a pruned outside model is saved as: its state-dict checkpoint, or its pickled module (which then
    reloads with --trust-pickle, as its input did)."""
    if loaded.checkpoint is not None:
        return loaded.checkpoint
    return Checkpoint(arch=PICKLED_ARCH, arch_kwargs={}, state_dict={}, module=loaded.model)


def prune(model_path: str | Path, method: str, output: str | Path | None = None, *,
          options: dict[str, Any] | None = None,
          config: TrainConfig | None = None, dataset: str | None = None, data_root: str | Path | None = None,
          download: bool = False, epochs_prune: int = 10, epochs_finetune: int = 10, lr: float | None = None,
          lr_finetune: float | None = None, eval_attack: str = "pgd20", eval_n: int | None = None,
          plots: bool = False, force: bool = False, resume: bool = False, keep_state: bool = False,
          quiet: bool = False, trust_pickle: bool = False, console=None, transforms: Sequence[str] = (),
          warn: Callable[[str], None] = _stderr, model_options: dict[str, Any] | None = None,
          command: str | None = None, target_macs: float | None = None, target_speedup: float | None = None,
          runtime: str = "onnxruntime",
          target_batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> PruneReport | dict[str, Any]:
    """Prune a model file with `method` and save it (masks folded, metadata appended) with a full report.

    The file is a compressor checkpoint, or any outside model `compressor.open_model` opens with
    `model_options` (a state dict with ``arch``: a zoo name or ``module:callable``, ``mean``/``std`` or
    ``no_normalize``; a pickled module with `trust_pickle`); the output reloads with the same options. Without
    a sparsity or N:M pattern in `options` the target is `DEFAULT_SPARSITY`; without `output` it is
    ``MODEL.<method><percent>.pt`` beside the input (e.g. ``model.tscnc90.pt``), never an existing file.

    `transforms` (specs such as ``channels:0.5``) apply first, in the order documented in
    `pruners.transforms.base`; `method` "none" runs them alone. With `target_macs` (a fraction of the dense MACs)
    or `target_speedup` (measured on `runtime` at `target_batch_sizes`, `pruners.targets`), the `channels`
    transform's ratio is searched instead of given (``channels`` with magnitude importance is added when absent). The report holds the achieved global and
    per-layer sparsity, clean and `eval_attack` accuracy on the test split before and after, parameters,
    nonzeros and MACs before and after, condition-number statistics before, every epoch and after, and
    the time taken, as a `PruneReport` (a non-zero DDP rank gets its training job's dict instead). Bad input
    raises CompressorError before anything is written.
    """
    t_start = time.perf_counter()
    if Path(model_path).suffix == ".pt2":  # refused unopened: loading a program can run code, and gains nothing here
        raise CompressorError(f"{model_path} is a .pt2 program, whose graph cannot be pruned: prune the model it was "
                              "exported from (its state dict with `arch`, or a pickled module with `trust_pickle`), "
                              "then `compressor export` the result")
    transforms = PRUNERS.get(method).transform_specs(transforms)  # a preset's transforms (arlst: separable-linear)
    check_target(target_macs, target_speedup)
    targeted = target_macs is not None or target_speedup is not None
    if targeted and not any(split_spec(s)[0] == "channels" for s in transforms):
        transforms = ["channels", *transforms]  # the target chooses its ratio
    chosen = parse_transforms(transforms)
    for t in chosen:
        if isinstance(t, Channels) and targeted and t.ratio is not None:
            raise CompressorError(f"`transforms` channels:{t.ratio:g} and a `target_macs` or `target_speedup` both "
                                  "set the ratio: drop the ratio (channels,importance=...) or the target")
        if isinstance(t, Channels) and not targeted and t.ratio is None:
            raise CompressorError(NEEDS_RATIO)
    target = {"macs": target_macs, "speedup": target_speedup, "runtime": runtime,
              "batch_sizes": list(target_batch_sizes)} if targeted else None
    if target_speedup is not None:
        RUNTIMES.get(runtime)  # an unknown runtime fails before anything runs
    options = dict(options or {})
    for t in chosen:
        options = t.pruner_options(method, options)
    if method == "none" and not chosen and options.get("pattern", "unstructured") == "unstructured":
        raise CompressorError("`method` none without `transforms` or `pattern` changes nothing: add e.g. "
                              "`transforms` channels:0.5, or choose a pruner")
    defaulted = method != "none" and options.get("sparsity") is None and \
        str(options.get("pattern", "unstructured")).strip().lower() in ("unstructured", "none", "")
    if defaulted:
        options["sparsity"] = DEFAULT_SPARSITY
    pruner = make_pruner(method, **check_prunes(method, options))
    config = config or TrainConfig(adv=pruner.default_adv, weight_decay=pruner.default_weight_decay)
    config = replace(config, craft_mode=config.crafting)  # the mode used, for the provenance
    config.validate()
    pruner.plan(epochs_prune, epochs_finetune, lr, lr_finetune)  # epoch counts fit the method
    chosen_output = output is None
    if output is None:
        output = default_output(model_path, _tag(method, getattr(pruner.config, "sparsity", None)), resume)
    output = Path(output)
    inputs = [model_path, *dataset_files(dataset)]
    check_output(output, force, inputs)
    plot_paths = [output.with_name(f"{output.stem}.kappa-{kind}.png") for kind in ("layers", "epochs")]
    for p in plot_paths if plots else ():
        check_output(p, force, inputs)
    states = [phase_state_path(output, p) for p in PHASES]
    if resume and not any(s.is_file() for s in states):
        raise CompressorError(f"no pruning state beside {output} to resume from: run without `resume` to start afresh")
    left = [s for s in states if s.is_file()]
    if not resume and not force and left:
        raise CompressorError(f"{left[0]} holds an interrupted run: pass `resume` to continue it, or `force` to start "
                              "afresh")
    with main_process_lock(output):
        return _prune(model_path, pruner, chosen, output, plot_paths, states, config=config, dataset=dataset, data_root=data_root, download=download, epochs_prune=epochs_prune,
                      epochs_finetune=epochs_finetune, lr=lr, lr_finetune=lr_finetune, eval_attack=eval_attack,
                      eval_n=eval_n, plots=plots, force=force, resume=resume, keep_state=keep_state, quiet=quiet,
                      trust_pickle=trust_pickle, console=console, transforms=transforms, warn=warn, t_start=t_start,
                      model_options=model_options, defaulted=defaulted, chosen_output=chosen_output,
                      command=command, target=target)


def _prune(model_path, pruner: Pruner, chosen, output: Path, plot_paths, states, *, config: TrainConfig, dataset, data_root, download, epochs_prune, epochs_finetune, lr, lr_finetune, eval_attack, eval_n, plots,
           force, resume, keep_state, quiet, trust_pickle, console, transforms, warn, t_start,
           model_options: dict[str, Any] | None = None, defaulted: bool = False,
           chosen_output: bool = False, command: str | None = None,
           target: dict[str, Any] | None = None) -> PruneReport | dict[str, Any]:
    """`prune` once its arguments are checked and its output is locked."""
    opened = {**(model_options or {}), "trust_pickle": trust_pickle or (model_options or {}).get("trust_pickle", False)}
    loaded, data = open_model(model_path, dataset=dataset, data_root=data_root, download=download, seed=config.seed,
                              **opened)
    ck = _outside_checkpoint(loaded, model_path)
    if data is None:
        raise CompressorError(f"{model_path} records no dataset to prune on: pass `dataset` NAME (or npz:PATH)")
    model = loaded.model
    check_finite_weights(model, str(model_path))
    check_model_fits_data(model, data, what=str(model_path), input_shape=ck.input_shape or None)
    check_recorded(chosen, ck.compression)
    for t in chosen:
        t.check(model)
    if not any(t.structural for t in chosen):
        _check_pruner(pruner, model, warn)  # early: the layers will not change
    fingerprints = {"source_model": file_digest(model_path), "data": data.fingerprint()}
    for s in states if resume else ():  # before anything runs on a source or data that changed since
        if s.is_file():
            check_fingerprints(read_state(s), fingerprints, s)
    input_shape = tuple(ck.input_shape or data.info.input_shape)
    eps = config.eps if config.eps is not None else data.info.default_eps
    ctx = init_distributed(config.device)
    try:
        def measure() -> dict[str, Any]:
            res = evaluate_model(model, data, [eval_attack], eps=eps, norm=config.norm, n=eval_n, seed=config.seed,
                                 device=str(ctx.device))
            return {**_accuracies(res), "n": res.n, **condition_summary(model),
                    "size": size_report(model, input_shape)}

        before = measure() if ctx.is_main else {}
        reached = _reach(model, chosen, target, input_shape) if target is not None else None
        context = TransformContext(input_shape, data=data, config=replace(config, eps=eps), pruner=pruner, ctx=ctx)
        transform_entries = apply_transforms(model, chosen, context)
        if any(t.structural for t in chosen):
            _check_pruner(pruner, model, warn)
        job = prune_model(model, data, pruner, config, epochs_prune=epochs_prune, epochs_finetune=epochs_finetune,
                          lr=lr, lr_finetune=lr_finetune, state_prefix=output, resume=resume, ctx=ctx, quiet=quiet,
                          console=console, callbacks=[cb for t in chosen for cb in t.callbacks(model)],
                          settings={"source": str(Path(model_path).resolve()), **fingerprints,
                                    "transforms": list(transforms), "target": target,
                                    "epochs_prune": epochs_prune, "epochs_finetune": epochs_finetune,
                                    "lr_prune": lr, "lr_finetune": lr_finetune})
        if not ctx.is_main:
            return job
        after = measure()
        report = _report(pruner, job, before, after, loaded_path=model_path, output=output, data=data, eps=eps,
                         eval_attack=eval_attack, config=config, epochs=(epochs_prune, epochs_finetune))
        report.transforms = [_entry_summary(e) for e in transform_entries]
        report.target = reached
        report.structural = structural_summary(transform_entries, report.size["change"])
        report.normalization, report.sparsity_default = loaded.normalization, defaulted
        report.output_default, report.reload_flags = chosen_output, _reload_flags(ck, loaded)
        entry = {"name": pruner.name, "kind": "prune", "structural": False,
                 **{k: getattr(report, k) for k in ("sparsity_target", "sparsity_achieved", "allocation", "pattern",
                                                    "pattern_skipped", "schedule", "epochs_prune", "epochs_finetune",
                                                    "adv")},
                 "per_layer": {r["layer"]: r["sparsity"] for r in report.layers}, "config": report.config}
        save_checkpoint(output, model, arch=ck.arch, arch_kwargs=ck.arch_kwargs, dataset=ck.dataset or data.info.as_dict(),
                        compression=[*ck.compression, *transform_entries, entry],
                        provenance=make_provenance(config.seed, {k: after[k] for k in after if k.endswith("accuracy")},
                                                   prune=entry, train_config=asdict(config), source=str(model_path),
                                                   command=command),
                        force=force)
        if plots:
            title = f"{pruner.name} at {report.sparsity_achieved:.1%} sparsity ({ck.arch}, {data.info.name})"
            names = [r["layer"] for r in report.layers]
            kappa_before = {n: before["layers"].get(n, {}).get("kappa", math.nan) for n in names}  # nan: a new layer
            plot_kappa_layers(plot_paths[0], names, [kappa_before[n] for n in names],
                              [after["layers"][n]["kappa"] for n in names], title)
            plot_kappa_epochs(plot_paths[1], job["history"], kappa_before, title)
            report.plots = [str(p) for p in plot_paths]
        if not keep_state:
            for s in states:
                s.unlink(missing_ok=True)
        report.seconds = time.perf_counter() - t_start
        return report
    finally:
        shutdown(ctx)


def _reach(model: nn.Module, chosen: Sequence[Any], target: dict[str, Any], input_shape: tuple[int, ...]) -> dict:
    """Search the `channels` transform's ratio for `target` on copies of `model` and set it; what was found."""
    channels = next(t for t in chosen if isinstance(t, Channels))
    if target["macs"] is not None:
        reached = ratio_for_macs(model, channels, target["macs"], input_shape)
    else:
        reached = ratio_for_speedup(model, channels, target["speedup"], input_shape, runtime=target["runtime"],
                                    batch_sizes=target["batch_sizes"])
    channels.ratio = reached["ratio"]
    return reached


def _reload_flags(ck: Checkpoint, loaded: LoadedModel) -> list[str]:
    """The flags the output needs to load, as its input did (an import path, a pickled module)."""
    if ck.arch == PICKLED_ARCH:
        return ["--trust-pickle"]
    return [f"--arch {ck.arch}"] if is_import_path(ck.arch) else []


def _check_pruner(pruner: Pruner, model: nn.Module, warn: Callable[[str], None]) -> None:
    """Validate the pruner against `model` (globs, patterns) and warn about layers the pattern skips."""
    allocator = pruner.check(model)
    if allocator.skipped:
        n, m = pruner.config.nm
        warn(f"warning: pattern {n}:{m} skipped for {', '.join(allocator.skipped)} (input size not divisible by "
             f"{m}); these layers are pruned unstructured")


def _entry_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """A transform's checkpoint entry without its bulky pruning history (for the report)."""
    return {k: v for k, v in entry.items() if k != "history"}


def _report(pruner: Pruner, job: dict[str, Any], before: dict[str, Any], after: dict[str, Any], *, loaded_path,
            output: Path, data: DataBundle, eps: float, eval_attack: str, config: TrainConfig,
            epochs: tuple[int, int]) -> PruneReport:
    """The report of one pruning job."""
    c = pruner.config
    layers = []
    for row in job["layers"]:
        n = row["layer"]
        old = before["layers"].get(n, {})  # a layer made by a transform has no "before"
        layers.append({**row, "sparsity": after["layers"][n]["sparsity"], "mask_sparsity": row["sparsity"],
                       **{f"{k}_before": old.get(k) for k in LAYER_STATS},
                       **{f"{k}_after": after["layers"][n][k] for k in LAYER_STATS}})
    summary = ("clean_accuracy", f"{eval_attack}_accuracy", "sparsity", "kappa_mean", "kappa_max", "singular_layers",
               "kappa_support_mean", "kappa_support_max", "lipschitz_bound")
    return PruneReport(
        method=pruner.name, input=str(loaded_path), output=str(output), dataset=data.info.name,
        sparsity_target=c.sparsity, sparsity_achieved=after["sparsity"], allocation=c.allocation,
        pattern=c.pattern, pattern_skipped=job["pattern_skipped"], schedule=c.schedule,
        epochs_prune=epochs[0], epochs_finetune=epochs[1], adv=config.adv,
        eval={"split": "test", "n": after["n"], "attack": eval_attack, "eps": eps},
        before={k: before[k] for k in summary}, after={k: after[k] for k in summary},
        size={"before": before["size"], "after": after["size"], "change": size_change(before["size"], after["size"])},
        layers=layers, phases=job["phases"], history=job["history"], config=c.as_dict(),
        train=asdict(config), prune_seconds=job["seconds"],
        updates={k: v for k, v in job["summary"].items() if k != "lcc_shrink"},
        lcc_shrink=job["summary"].get("lcc_shrink"),
    )
