"""`compressor demo`: the main job end to end on the embedded digits data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from compressor import DataBundle, TrainConfig, evaluate_model, open_model, train
from compressor.cli.options import Force, Json, Seed, command_line
from compressor.errors import CompressorError
from compressor.io import atomic_write_text, check_output, check_outputs, output_lock
from compressor.progress import quiet as no_bars
from compressor.reporting import stdout_console, table, to_json
from compressor.workflows import state_path_for
from pruners import make_pruner, prune
from pruners.workflow import PHASES, check_prunes, phase_state_path

from ..bench import Scoring, Timing, parse_variants, run_bench
from ..bench_report import output_paths, rich_table, write_outputs
from .. import get_exporter
from .export import sample_inputs

ATTACKS = ["fgsm", "pgd20"]


def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the checkpoints and the report."),
    epochs: int = typer.Option(15, "--epochs"),
    prune_epochs: int = typer.Option(2, "--prune-epochs", help="TSCNC prune-phase epochs (as many again to fine-tune)."),
    sparsity: float = typer.Option(0.9, "--sparsity", help="TSCNC target sparsity."),
    seed: int = Seed,
    force: bool = Force,
    json_out: bool = Json,
) -> None:
    """Adversarially train a CNN on digits (PGD-AT), prune it with TSCNC, evaluate both on the test split, save them,
    export both to ONNX and bench them (eager and ONNX Runtime)."""
    if epochs < 1:
        raise CompressorError(f"--epochs must be at least 1, got {epochs}")
    pruner = make_pruner("tscnc", **check_prunes("tscnc", {"sparsity": sparsity}))  # before anything runs
    try:
        pruner.plan(prune_epochs, prune_epochs)
    except CompressorError as exc:
        raise CompressorError(f"--prune-epochs {prune_epochs} does not fit TSCNC's schedule ({exc}): use "
                              "--prune-epochs 2 or more") from None
    ckpt, pruned = out / "model.pt", out / f"pruned-tscnc{round(sparsity * 100)}.pt"
    outputs = demo_outputs(out, ckpt, pruned)
    check_outputs(outputs, force)  # every file the demo writes, before anything runs
    with output_lock(ckpt, pruned, out / "report.json"), no_bars(json_out):
        _run(out, ckpt, pruned, epochs=epochs, prune_epochs=prune_epochs, sparsity=sparsity, seed=seed, force=force,
             json_out=json_out)


def demo_outputs(out: Path, dense: Path, pruned: Path) -> list[Path]:
    """Every file the demo writes: checkpoints, their training states, the report and what `deploy` writes."""
    return [dense, state_path_for(dense), pruned, *(phase_state_path(pruned, p) for p in PHASES),
            out / "report.json", *deploy_outputs(out, dense, pruned)]


def _run(out: Path, ckpt: Path, pruned: Path, *, epochs: int, prune_epochs: int, sparsity: float, seed: int,
         force: bool, json_out: bool) -> None:
    eps = 0.1
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, adv="pgd", eps=eps, steps=10, seed=seed,
                         val_steps=10, device="cpu")
    trained = train("cnn-small", "digits", ckpt, config, force=force, quiet=json_out, command=command_line())
    loaded, data = open_model(ckpt, seed=seed)
    res = evaluate_model(loaded.model, data, ATTACKS, eps=eps, seed=seed, device="cpu")
    prune_cfg = TrainConfig(batch_size=64, adv="trades", eps=eps, steps=10, seed=seed, device="cpu")
    pr = prune(ckpt, "tscnc", pruned, options={"sparsity": sparsity}, config=prune_cfg, epochs_prune=prune_epochs,
               epochs_finetune=prune_epochs, eval_attack="pgd20", force=force, quiet=json_out,
               console=Console(stderr=True), command=command_line())
    pruned_model, _ = open_model(pruned, seed=seed)
    res_pruned = evaluate_model(pruned_model.model, data, ATTACKS, eps=eps, seed=seed, device="cpu")
    report = {"checkpoint": str(ckpt), "train": {k: trained[k] for k in ("best_epoch", "best", "seconds")},
              "eval": res, "pruned": {"checkpoint": str(pruned), "eval": res_pruned,
                                      **{k: getattr(pr, k) for k in (
                                          "method", "sparsity_target", "sparsity_achieved", "before", "after",
                                          "layers", "phases", "seconds")}}}
    report["deploy"] = deploy(out, ckpt, pruned, data, force=force, quiet=json_out)
    report_path = out / "report.json"
    check_output(report_path, force)
    atomic_write_text(report_path, to_json(report))
    if json_out:
        print(to_json(report))
        return
    rows = [("clean accuracy", res.clean_accuracy, res_pruned.clean_accuracy)]
    rows += [(f"{k} accuracy", v.accuracy, res_pruned.attacks[k].accuracy) for k, v in res.attacks.items()]
    rows.append(("worst case", res.worst_case_accuracy, res_pruned.worst_case_accuracy))
    for label, key in (("sparsity", "sparsity"), ("kappa mean", "kappa_mean"), ("kappa max", "kappa_max"),
                       ("singular layers", "singular_layers"), ("Lipschitz bound", "lipschitz_bound")):
        rows.append((label, pr.before[key], pr.after[key]))
    stdout_console().print(table(
        f"cnn-small on digits: PGD-AT ({trained['seconds']:.0f}s), then TSCNC at {sparsity:.0%} "
        f"({pr.prune_seconds:.0f}s); test split, n={res.n}, linf eps={eps}",
        ["metric", "dense", f"tscnc {pr.sparsity_achieved:.0%}"], rows))
    dep = report["deploy"]
    stdout_console().print(rich_table(dep["bench"].to_dict()))
    stdout_console().print(
        f"checkpoints: {ckpt}, {pruned}\nreport: {report_path}\n"
        f"ONNX: {', '.join(e['path'] for e in dep['onnx'])} (max |delta logit| "
        f"{max(e['max_abs_diff'] for e in dep['onnx']):.2g})\n"
        f"compressed pruned checkpoint: {dep['compressed']['path']} ({dep['compressed']['file_bytes']:,} bytes vs "
        f"{dep['compressed']['details']['dense_bytes']:,} dense)\nbench: {', '.join(dep['bench_outputs'])}\n"
        f"next: compressor inspect {pruned}")


def deploy_outputs(out: Path, dense: Path, pruned: Path) -> list[Path]:
    """Every file `deploy` writes, so existing ones are refused before training starts."""
    return [dense.with_suffix(".onnx"), pruned.with_suffix(".onnx"), pruned.with_suffix(".safetensors"),
            *output_paths(out / "bench").values()]


def deploy(out: Path, dense: Path, pruned: Path, data: DataBundle, *, force: bool, quiet: bool) -> dict:
    """Export both models to ONNX (parity on test images), store the pruned one compressed, bench all four variants."""
    x, label = sample_inputs(data, 64)
    results = []
    for src in (dense, pruned):
        loaded, _ = open_model(src)
        res = get_exporter("onnx").export(loaded.model, src.with_suffix(".onnx"), input_shape=data.info.input_shape,
                                          sample_inputs=x, parity_inputs=label, force=force)
        results.append(res.as_dict())
    compressed = get_exporter("sparse-safetensors").export(  # `loaded` is the pruned model, the loop's last
        loaded.model, pruned.with_suffix(".safetensors"), input_shape=data.info.input_shape, force=force,
        checkpoint=loaded.checkpoint).as_dict()
    variants = parse_variants([str(dense), f"{dense}={dense.with_suffix('.onnx')}", str(pruned),
                               f"{pruned}={pruned.with_suffix('.onnx')}"])
    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    bench = run_bench(variants, Timing(batch_sizes=[1, 64], warmup=5, runs=20, threads=1),
                      Scoring(attacks=["pgd20"], eps=0.1, n=100, square_queries=100), log=log)
    paths = write_outputs(bench.to_dict(), out / "bench", force=force)
    return {"onnx": results, "compressed": compressed, "bench": bench,
            "bench_outputs": [str(p) for p in paths.values()]}
