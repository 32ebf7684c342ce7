"""`compressor prune`: prune a checkpoint with a registered pruner; method options come from the pruners' configs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from compressor import TrainConfig
from compressor.errors import CompressorError
from compressor.jobs import DataSource, RunOptions
from compressor.registry import PRUNERS
from compressor.reporting import normalization_text, stdout_console, table, to_json
from compressor.cli.options import (MODEL_SOURCE, Amp, ChannelsLast, CraftMode, DataRoot, Dataset, Device, Download,
                                    Eps, Force, Json, ModelCommand, Quiet, Seed, click_parameter, command_line, eps_value,
                                    existing_file, option_from, register_flags)

from .config import config_fields
from .job import PhasePlan, PruneEval, PruneJob, SizeTarget, train_config_for
from .report import PruneReport
from .targets import target_text
from .workflow import prune

log = logging.getLogger(__name__)
PREFIX = "cfg__"  # parameter names of the generated options (flags come from the config fields)


def _method_fields() -> dict[str, tuple[Any, dict[str, Any]]]:
    """CLI flag -> (ConfigField, {method: its default}), over every registered pruner's config (read when the
    command is built, so a pruner registered after this module's import has its options too)."""
    names = tuple(PRUNERS.names())
    if names not in _FIELDS:
        _FIELDS.clear()
        _FIELDS[names] = _collect_fields()
        register_flags({"transforms": "--transform", **{f.name: flag for flag, (f, _) in _FIELDS[names].items()}})
    return _FIELDS[names]


def _method_help() -> str:
    """The --method help, naming every registered pruner."""
    names = [n for n in PRUNERS.names() if n != "none"]
    return f"Pruner (see `compressor list pruners`): {', '.join(names)}, or none (transforms alone)."


def _collect_fields() -> dict[str, tuple[Any, dict[str, Any]]]:
    fields: dict[str, tuple[Any, dict[str, Any]]] = {}
    for entry in PRUNERS.entries():
        for f in config_fields(entry.obj.Config):
            known = fields.get(f.flag)
            if known is not None and (known[0].type is not f.type or known[0].name != f.name):
                log.warning("pruner %s: option %s clashes with another pruner's; ignored", entry.name, f.flag)
                continue
            fields.setdefault(f.flag, (f, {}))[1][entry.name] = f.default
    return fields


def _default_text(defaults: dict[str, Any]) -> str:
    shown = {m: d for m, d in defaults.items() if d not in (None, {}, "")}
    if not shown:
        return ""
    values = list(dict.fromkeys(map(str, shown.values())))
    if len(values) == 1:
        return f" Default: {values[0]}."
    common = max(values, key=lambda v: sum(str(d) == v for d in shown.values()))
    others = ", ".join(f"{m}: {d}" for m, d in shown.items() if str(d) != common)
    return f" Default: {common} ({others})."


def _click_option(flag: str, f: Any, defaults: dict[str, Any]) -> Any:
    """The command-line option of config field `f` (None unless given, so each method keeps its own default)."""
    scope = "" if len(defaults) == len(PRUNERS.names()) else f"[{', '.join(defaults)}] "
    extra = f" Choices: {', '.join(f.choices)}." if f.choices else ""
    decls = (f"{flag}/--no-{flag[2:]}",) if f.type is bool else (flag,)
    opt = typer.Option(None, *decls, help=f"{scope}{f.help}{extra}{_default_text(defaults)}", show_default=False)
    return click_parameter(PREFIX + f.name, Optional[f.type], opt)


class PruneCommand(ModelCommand):
    """`prune` plus one option per pruner-config field, generated from the registered pruners' configs.

    The options are click parameters of the command object, so no function signature is rewritten; `invoke`
    hands their values to `prune_cmd` as ``ctx.meta[METHOD_OPTIONS]`` (parameter name -> value).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.name == "method":
                param.help = _method_help()
        self.params.extend(_click_option(flag, f, defaults) for flag, (f, defaults) in _method_fields().items())

    def invoke(self, ctx: Any) -> Any:
        ctx.meta[METHOD_OPTIONS] = {n: ctx.params.pop(n) for n in list(ctx.params) if n.startswith(PREFIX)}
        return super().invoke(ctx)


METHOD_OPTIONS = "compressor.prune.method_options"


def _pruner_options(method: str, given: dict[str, Any], fields: dict[str, tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """The config options given on the command line, checked against `method`."""
    options = {}
    for flag, (f, owners) in fields.items():
        value = given.get(PREFIX + f.name)
        if value is None:
            continue
        if method not in owners:
            raise CompressorError(f"{flag} is an option of {', '.join(owners)}, not of --method {method}: drop it "
                                  f"or choose --method {next(iter(owners))}")
        options[f.name] = f.parse(value) if f.parse else value
    return options


def prune_cmd(
    ctx: typer.Context,
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Model to prune: a checkpoint from `compressor train`, "
                                                                   "a state dict with --arch (your own model as "
                                                                   "PACKAGE.MODULE:CALLABLE, or a zoo name), or a "
                                                                   "pickled module with --trust-pickle."),
    method: str = typer.Option(..., "--method", "-m", help="Pruner (see `compressor list pruners`; the list is "
                                                             "filled in when the command is built)."),
    transform: Optional[list[str]] = typer.Option(
        None, "--transform", "-t", metavar="SPEC", help="Transform applied before the pruner, repeatable, in the order channels, "
                                        "separable-linear, nm (see `compressor list transforms`): e.g. channels:0.5, "
                                        "separable-linear:classifier.*, nm:2:4."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Pruned checkpoint to write (.pt). Default: MODEL.<method><sparsity %>"
                                               ".pt beside MODEL, e.g. model.tscnc90.pt, never an existing file."),
    dataset: Optional[str] = Dataset,
    data_root: Optional[Path] = DataRoot,
    download: bool = Download,
    adv: Optional[str] = typer.Option(None, "--adv", help="trades or pgd (default: the method's, TRADES except "
                                                           "admm's PGD-AT)."),
    epochs_prune: int = option_from(PhasePlan, "epochs_prune", help="Epochs of the prune phase (mask search; the "
                                                                 "references: HYDRA 20, robust ADMM 200)."),
    epochs_finetune: int = option_from(PhasePlan, "epochs_finetune", help="Epochs of fine-tuning with fixed masks."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Prune-phase learning rate (default: the method's; "
                                                          "0.1 for HYDRA's scores, else 0.01)."),
    lr_finetune: Optional[float] = typer.Option(None, "--lr-finetune", help="Fine-tune learning rate (default 0.01)."),
    batch_size: int = option_from(TrainConfig, "batch_size"),
    eps: Optional[str] = Eps,
    steps: int = option_from(TrainConfig, "steps", help="Attack steps while training."),
    beta: float = option_from(TrainConfig, "beta", help="TRADES trade-off."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="SGD weight decay in both phases "
                                                 "(default: the method's reference value, 1e-4 for hydra, arlst and "
                                                 "admm, else 5e-4)."),
    craft_mode: str = CraftMode,
    amp: str = Amp,
    channels_last: str = ChannelsLast,
    val_n: int = option_from(TrainConfig, "val_n", help="Validation images used per epoch."),
    eval_attack: str = option_from(PruneEval, "eval_attack", help="Attack for the before/after test accuracy."),
    eval_n: Optional[int] = typer.Option(None, "--eval-n", help="Test images for before/after (default: all)."),
    target_macs: Optional[float] = typer.Option(
        None, "--target-macs", help="Remove channels until the model has at most this fraction of the dense MACs "
                                    "(e.g. 0.5): the channels transform's ratio is searched (channels is added when "
                                    "not given)."),
    target_speedup: Optional[float] = typer.Option(
        None, "--target-speedup", help="Remove channels until the model measures this many times faster than the "
                                       "dense one on --runtime at every --target-batch-sizes (e.g. 2), timed here in "
                                       "interleaved rounds with one intra-op thread (as `compressor bench` by "
                                       "default)."),
    runtime: str = option_from(SizeTarget, "runtime", help="Runtime that times --target-speedup: onnxruntime (ONNX "
                                                       "export, ONNX Runtime CPU) or pytorch (eager)."),
    target_batch_sizes: str = typer.Option("1,64", "--target-batch-sizes",
                                           help="Batch sizes at which --target-speedup must hold, comma-separated."),
    plots: bool = typer.Option(False, "--plots", help="Write kappa plots (PNG) next to the output."),
    seed: int = Seed,
    device: str = Device,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUTPUT.<phase>.state."),
    keep_state: bool = typer.Option(False, "--keep-state", help="Keep the phase states after success."),
    force: bool = Force,
    quiet: bool = Quiet,
    json_out: bool = Json,
) -> None:
    """Prune a model (masks folded into plain weights) and report sparsity, accuracy and condition numbers.

    `compressor prune model.pt --method tscnc` prunes to 0.9 sparsity (without --sparsity or an N:M --pattern) on
    the dataset the checkpoint records, and writes model.tscnc90.pt beside it."""
    existing_file(model_path, "model")
    PRUNERS.get(method)  # an unknown method fails before its options are checked against it
    options = _pruner_options(method, ctx.meta.get(METHOD_OPTIONS, {}), _method_fields())
    evaluation = PruneEval(eval_attack, eval_n, plots)
    config = train_config_for(method, batch_size=batch_size, adv=adv, eps=eps_value(eps), steps=steps, beta=beta,
                              val_n=val_n, seed=seed, device=device, craft_mode=craft_mode, amp=amp,
                              channels_last=channels_last,
                              weight_decay=weight_decay)
    target = SizeTarget(target_macs, target_speedup, runtime, _batch_sizes(target_batch_sizes))
    job = PruneJob(method, ctx.meta[MODEL_SOURCE].at(model_path), options, transform or (), config,
                   DataSource(dataset, data_root, download),
                   RunOptions(output, force, resume, keep_state, quiet or json_out, command_line()),
                   PhasePlan(epochs_prune, epochs_finetune, lr, lr_finetune), evaluation, target)
    report = prune(job, console=Console(stderr=True))
    if not isinstance(report, PruneReport):  # a non-zero DDP rank
        return
    if json_out:
        print(to_json(report))
        return
    _print(report)


def _batch_sizes(text: str) -> list[int]:
    """'1,64' -> [1, 64] (a bad list is a one-line error)."""
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(b < 1 for b in sizes):
        raise CompressorError(f"`target_batch_sizes` {text!r} must be positive batch sizes, comma-separated, e.g. "
                              "1,64")
    return sizes


def _print(report: PruneReport) -> None:
    console = stdout_console()
    attack = report.eval["attack"]
    keys = [("clean accuracy", "clean_accuracy"), (f"{attack} accuracy", f"{attack}_accuracy"),
            ("sparsity", "sparsity"), ("kappa mean (non-singular layers)", "kappa_mean"), ("kappa max", "kappa_max"),
            ("singular layers (kappa inf)", "singular_layers"), ("kappa on the support, mean", "kappa_support_mean"),
            ("kappa on the support, max", "kappa_support_max"), ("Lipschitz bound", "lipschitz_bound")]
    rows = [(label, report.before[k], report.after[k]) for label, k in keys]
    console.print(table(f"{report.headline()} ({report.allocation}, {report.pattern}) on {report.dataset} test "
                        f"(n={report.eval['n']}) -> {report.output}", ["key", "before", "after"], rows))
    layer_rows = [(r["layer"], "x".join(map(str, r["shape"])), r["pattern"], r["sparsity"], r["kappa_before"],
                   r["kappa_after"], r["kappa_support_after"], r["rank_after"]) for r in report.layers]
    console.print(table("layers (kappa of the weight reshaped to out x in*kh*kw)",
                        ["layer", "shape", "pattern", "sparsity", "kappa before", "kappa after", "kappa support after",
                         "rank after"], layer_rows))
    change = report.size["change"]
    console.print(table("size (MACs: one input)", ["key", "before", "after", "reduction"],
                        [(k, v["before"], v["after"], v["reduction"]) for k, v in change.items()]))
    for t in report.transforms:
        console.print(f"transform {t['name']}: " + ", ".join(f"{k}={v}" for k, v in t.items()
                                                              if k in ("ratio", "importance", "round_to", "pattern",
                                                                       "reg", "nu")))
        if t.get("kept_coupled"):
            console.print(f"transform {t['name']}: kept at full width (their channels feed an operation Torch-Pruning "
                          f"cannot follow, e.g. a parameter-free shortcut): {', '.join(t['kept_coupled'])}",
                          soft_wrap=True)
        if t.get("rewritten_shortcuts"):
            console.print(f"transform {t['name']}: shortcuts that subsample and zero-pad channels rewritten as frozen "
                          f"0/1 strided 1x1 convolutions (same output), so the residual streams are thinned too: "
                          f"{', '.join(t['rewritten_shortcuts'])} (shortcuts=keep leaves their layers at full width)",
                          soft_wrap=True)
    if report.target is not None:
        console.print(target_text(report.target), soft_wrap=True)
    if report.pattern_skipped:
        console.print(f"N:M pattern skipped (input size not divisible by M): {', '.join(report.pattern_skipped)}")
    for p in report.plots or []:
        console.print(f"plot: {p}")
    if report.sparsity_default:
        console.print(f"sparsity target {report.sparsity_target:g}: the default (--sparsity to change it)")
    console.print(f"input normalisation: {normalization_text(report.normalization)}")
    reload = " ".join(report.reload_flags)
    console.print(f"output: {report.output}{f' (load it with {reload})' if reload else ''}")
    console.print(f"time: {report.seconds:.1f}s")


_FIELDS: dict[tuple[str, ...], dict[str, tuple[Any, dict[str, Any]]]] = {}  # registered names -> their fields
_method_fields()
prune_cmd.command_class = PruneCommand  # `compressor.cli` builds the command with it (when run)
