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
from compressor.data import DataBundle
from compressor.errors import CompressorError
from compressor.evaluation import Evaluation
from compressor.io import check_output, file_digest, main_process_lock
from compressor.jobs import EvalOptions
from compressor.settings import gather, job_from
from compressor.models import is_import_path
from compressor.sanity import check_finite_weights, check_model_fits_data
from compressor.training import TrainConfig, Trainer, init_distributed, shutdown
from compressor.training.engine import check_fingerprints, read_state
from compressor.workflows import evaluate_model, open_model

from .base import Pruner
from .job import DEFAULT_SPARSITY, LoopOptions, PhasePlan, PruneJob, check_prunes, make_pruner  # noqa: F401
from .report import PruneReport, structural_summary
from .callback import PrunerCallback
from .monitor import ConditionTracker, condition_summary
from .plots import plot_kappa_epochs, plot_kappa_layers
from .targets import ratio_for_macs, ratio_for_speedup
from .transforms import TransformContext, apply_transforms, check_recorded
from .transforms.channels import Channels
from .transforms.separable import ConditionRegularizer

PHASES = ("prune", "finetune")
LAYER_STATS = ("kappa", "kappa_support", "rank", "sigma_max", "sigma_min", "frobenius")


def phase_state_path(output: str | Path, phase: str) -> Path:
    """Where the per-epoch training state of one phase of a job writing `output` lives."""
    output = Path(output)
    return output.with_name(f"{output.name}.{phase}.state")


def prune_model(model: nn.Module, data: DataBundle, pruner: Pruner, config: TrainConfig,
                plan: PhasePlan | None = None, loop: LoopOptions | None = None, /, **fields: Any) -> dict[str, Any]:
    """Run `pruner`'s phases (one Trainer each) on `model`, fold the masks in, and return what happened.

    `plan` is a `PhasePlan` or its fields by name (`epochs_prune`, `epochs_finetune`, `lr`, `lr_finetune`), `loop`
    a `LoopOptions` or its fields (`state_prefix`, `resume`, `callbacks`, `track`, `quiet`, `console`, ...). With
    `state_prefix`, each phase keeps a per-epoch state beside it for `resume`; a finished phase is replayed from
    its state (no training) so that the next one starts exactly where it started. The state records the pruner,
    its options and `settings` (e.g. the transforms and the source model): resuming with other values is refused.
    """
    parts = gather("prune_model", fields, {"plan": (PhasePlan, plan), "loop": (LoopOptions, loop)})
    plan, loop = parts["plan"], parts["loop"]
    phases = pruner.plan(plan.epochs_prune, plan.epochs_finetune, plan.lr, plan.lr_finetune)
    pruner.attach(model)
    extra = [ConditionTracker()] if loop.track else []
    torch.manual_seed(config.seed)  # a resumed job replays to the same state, so this is the same for both
    runs, history = [], []
    t0 = time.perf_counter()
    for phase in phases:
        cfg = replace(config, epochs=phase.epochs, lr=phase.lr, select=phase.select or config.select)
        state = phase_state_path(loop.state_prefix, phase.name) if loop.state_prefix is not None else None
        if loop.console is not None and not loop.quiet:
            loop.console.print(f"{pruner.name}: {phase.name} phase, {phase.epochs} epochs, lr {phase.lr:g}")
        adapter = PrunerCallback(pruner, phase)
        trainer = Trainer(model, data, cfg, [adapter, *extra, *loop.callbacks], state_path=state, ctx=loop.ctx,
                          quiet=loop.quiet, console=loop.console,
                          settings={"method": pruner.name, "pruner": pruner.config.as_dict(),
                                    "phase": phase.name, **(loop.settings or {})},
                          lr_option="lr" if phase.name == "prune" else "lr_finetune")
        result = trainer.fit(resume=bool(loop.resume and state is not None and state.is_file()))
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


def _plot_paths(output: Path) -> list[Path]:
    """Where a job writing `output` puts its kappa plots (per layer, per epoch)."""
    return [output.with_name(f"{output.stem}.kappa-{kind}.png") for kind in ("layers", "epochs")]


def prune(job: PruneJob | str | Path, method: str | None = None, output: str | Path | None = None, /, *,
          console: Any = None, warn: Callable[[str], None] = _stderr, **fields: Any) -> PruneReport | dict[str, Any]:
    """Prune a model file with `method` and save it (masks folded, metadata appended) with a full report.

    Takes a `PruneJob`, or ``model_path, method, output`` and the job's other fields by name (those of `PruneJob`
    and of its parts `ModelSource`, `DataSource`, `RunOptions`, `PhasePlan`, `PruneEval`, `SizeTarget`), e.g.
    ``prune("m.pt", "tscnc", options={"sparsity": 0.9}, epochs_prune=5, quiet=True)``; `console` shows the phases
    and `warn` receives warnings. The file is a compressor checkpoint, or any outside model `open_model` opens
    (a state dict with `arch`, `mean`/`std` or `no_normalize`; a pickled module with `trust_pickle`); the output
    reloads with the same options. Without `output` it is ``MODEL.<method><percent>.pt`` beside the input (e.g.
    ``model.tscnc90.pt``), never an existing file.

    `transforms` apply first, in the order documented in `pruners.transforms.base`; `method` "none" runs them
    alone. The report holds the achieved global and per-layer sparsity, clean and `eval_attack` accuracy on the
    test split before and after, parameters, nonzeros and MACs before and after, condition-number statistics
    before, every epoch and after, and the time taken, as a `PruneReport` (a non-zero DDP rank gets its training
    job's dict instead). Bad input raises CompressorError before anything is written.
    """
    t_start = time.perf_counter()
    job = job_from(PruneJob, "prune", job, {"path": job, "method": method, "output": output}, fields)
    run = job.run
    output = run.output or default_output(job.model.path, _tag(job.method, job.pruner_config.sparsity), run.resume)
    inputs = [job.model.path, *job.data.files()]
    check_output(output, run.force, inputs)
    for p in _plot_paths(output) if job.evaluation.plots else ():
        check_output(p, run.force, inputs)
    states = [phase_state_path(output, p) for p in PHASES]
    run.check_resumable(states, f"no pruning state beside {output} to resume from: run without `resume` to start "
                                "afresh")
    run.check_interrupted(states)
    with main_process_lock(output):
        return _prune(job, output, states, console=console, warn=warn, t_start=t_start)


def _prune(job: PruneJob, output: Path, states: Sequence[Path], *, console: Any, warn: Callable[[str], None],
           t_start: float) -> PruneReport | dict[str, Any]:
    """`prune` once its job is checked and its output is locked."""
    model_path, config, run = job.model.path, job.train_config, job.run
    pruner, chosen = job.pruner(), job.transforms_to_run()
    loaded, data = open_model(job.model, job.data, seed=config.seed)
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
    for s in states if run.resume else ():  # before anything runs on a source or data that changed since
        if s.is_file():
            check_fingerprints(read_state(s), fingerprints, s)
    input_shape = tuple(ck.input_shape or data.info.input_shape)
    eps = config.eps if config.eps is not None else data.info.default_eps
    ctx = init_distributed(config.device)
    try:
        options = EvalOptions(eps=eps, norm=config.norm, n=job.evaluation.eval_n, seed=config.seed,
                              device=str(ctx.device), channels_last=config.channels_last)
        attacks = options.attacks([job.evaluation.eval_attack], data)  # the same for before and after

        def measure() -> dict[str, Any]:
            res = evaluate_model(model, data, attacks, options)
            return {**_accuracies(res), "n": res.n, **condition_summary(model),
                    "size": size_report(model, input_shape)}

        before = measure() if ctx.is_main else {}
        reached = _reach(model, chosen, job.target.settings(), input_shape) if job.target.given else None
        context = TransformContext(input_shape, data=data, config=replace(config, eps=eps), pruner=pruner, ctx=ctx)
        transform_entries = apply_transforms(model, chosen, context)
        if any(t.structural for t in chosen):
            _check_pruner(pruner, model, warn)
        settings = {"source": str(Path(model_path).resolve()), **fingerprints, "transforms": list(job.specs),
                    "target": job.target.settings(), **job.phases.settings()}
        callbacks = [cb for t in chosen for cb in t.callbacks(model)]
        if pruner.config.cond_reg > 0 and not any(isinstance(cb, ConditionRegularizer) for cb in callbacks):
            # --cond-reg on a model that is separable already (e.g. an ARLST output pruned again)
            callbacks.append(ConditionRegularizer(model, pruner.config.cond_reg, pruner.config.cond_nu))
        loop = LoopOptions(state_prefix=output, resume=run.resume, ctx=ctx, quiet=run.quiet, console=console,
                           callbacks=callbacks, settings=settings)
        result = prune_model(model, data, pruner, config, job.phases, loop)
        if not ctx.is_main:
            return result
        after = measure()
        report = _report(job, pruner, result, (before, after), output, data, eps)
        report.transforms = [_entry_summary(e) for e in transform_entries]
        report.target = reached
        report.structural = structural_summary(transform_entries, report.size["change"])
        report.normalization, report.sparsity_default = loaded.normalization, job.sparsity_default
        report.output_default, report.reload_flags = run.output is None, _reload_flags(ck, loaded)
        entry = {"name": pruner.name, "kind": "prune", "structural": False,
                 **{k: getattr(report, k) for k in ("sparsity_target", "sparsity_achieved", "allocation", "pattern",
                                                    "pattern_skipped", "schedule", "epochs_prune", "epochs_finetune",
                                                    "adv")},
                 "per_layer": {r["layer"]: r["sparsity"] for r in report.layers}, "config": report.config}
        save_checkpoint(output, model, arch=ck.arch, arch_kwargs=ck.arch_kwargs, dataset=ck.dataset or data.info.as_dict(),
                        compression=[*ck.compression, *transform_entries, entry],
                        provenance=make_provenance(config.seed, {k: after[k] for k in after if k.endswith("accuracy")},
                                                   prune=entry, train_config=asdict(config), source=str(model_path),
                                                   command=run.command),
                        force=run.force)
        if job.evaluation.plots:
            plot_paths = _plot_paths(output)
            title = f"{pruner.name} at {report.sparsity_achieved:.1%} sparsity ({ck.arch}, {data.info.name})"
            names = [r["layer"] for r in report.layers]
            kappa_before = {n: before["layers"].get(n, {}).get("kappa", math.nan) for n in names}  # nan: a new layer
            plot_kappa_layers(plot_paths[0], names, [kappa_before[n] for n in names],
                              [after["layers"][n]["kappa"] for n in names], title)
            plot_kappa_epochs(plot_paths[1], result["history"], kappa_before, title)
            report.plots = [str(p) for p in plot_paths]
        if not run.keep_state:
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


def _report(job: PruneJob, pruner: Pruner, result: dict[str, Any], measured: tuple[dict[str, Any], dict[str, Any]],
            output: Path, data: DataBundle, eps: float) -> PruneReport:
    """The report of one pruning job (`result` from `prune_model`, `measured` before and after it)."""
    before, after = measured
    c, config, attack = pruner.config, job.train_config, job.evaluation.eval_attack
    layers = []
    for row in result["layers"]:
        n = row["layer"]
        old = before["layers"].get(n, {})  # a layer made by a transform has no "before"
        layers.append({**row, "sparsity": after["layers"][n]["sparsity"], "mask_sparsity": row["sparsity"],
                       **{f"{k}_before": old.get(k) for k in LAYER_STATS},
                       **{f"{k}_after": after["layers"][n][k] for k in LAYER_STATS}})
    summary = ("clean_accuracy", f"{attack}_accuracy", "sparsity", "kappa_mean", "kappa_max", "singular_layers",
               "kappa_support_mean", "kappa_support_max", "lipschitz_bound")
    return PruneReport(
        method=pruner.name, input=str(job.model.path), output=str(output), dataset=data.info.name,
        sparsity_target=c.sparsity, sparsity_achieved=after["sparsity"], allocation=c.allocation,
        pattern=c.pattern, pattern_skipped=result["pattern_skipped"], schedule=c.schedule,
        epochs_prune=job.phases.epochs_prune, epochs_finetune=job.phases.epochs_finetune, adv=config.adv,
        eval={"split": "test", "n": after["n"], "attack": attack, "eps": eps},
        before={k: before[k] for k in summary}, after={k: after[k] for k in summary},
        size={"before": before["size"], "after": after["size"], "change": size_change(before["size"], after["size"])},
        layers=layers, phases=result["phases"], history=result["history"], config=c.as_dict(),
        train=asdict(config), prune_seconds=result["seconds"],
        updates={k: v for k, v in result["summary"].items() if k != "lcc_shrink"},
        lcc_shrink=result["summary"].get("lcc_shrink"),
    )
