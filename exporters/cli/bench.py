"""`compressor bench`: latency and robustness of models and their exported engines, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from compressor.attacks import build_attack
from compressor.cli.options import (DataRoot, Dataset, Eps, eps_value, Force, Json, MODEL_OPTIONS,
                                    names_list, option_from, Quiet, Seed)
from compressor.io import output_lock
from compressor.progress import quiet as no_bars
from compressor.reporting import normalization_text, stdout_console, to_json

from ..bench import Scoring, Timing, parse_variants, run_bench
from ..bench_report import check_outputs, notes_lines, rich_table, write_outputs
from ..engines import engine_suffixes
from .export import int_list, RegistryHelpCommand


class BenchCommand(RegistryHelpCommand):
    """`bench` with the engine files it runs from the registry."""

    helps = {"variants": lambda: "Models to run eager, or MODEL=ENGINE to run MODEL's exported engine "
                                 f"({', '.join(engine_suffixes())})."}


def bench_cmd(
    ctx: typer.Context,
    variants: List[str] = typer.Argument(..., metavar="MODEL[=ENGINE]..."),  # help: BenchCommand, from the registry
    engine: Optional[List[Path]] = typer.Option(None, "--engine",
                                                help="Engine exported from the (single) MODEL; repeatable."),
    batch_sizes: str = typer.Option("1,64", "--batch-sizes", help="Batch-size sweep for latency, e.g. 1,16,64."),
    warmup: int = option_from(Timing, "warmup", help="Untimed runs before timing each batch size."),
    runs: int = option_from(Timing, "runs", help="Timed runs per variant and batch size, split over --rounds."),
    rounds: int = option_from(Timing, "rounds", help="Interleaved rounds: each times every variant in turn; the "
                              "speedup interval is over rounds."),
    threads: int = option_from(Timing, "threads", help="Intra-op threads, pinned for every runtime."),
    device: str = option_from(Timing, "device", help="cpu or cuda[:N] (TensorRT engines always run on CUDA)."),
    attacks: str = typer.Option("pgd20", "--attacks",
                                help="White-box attacks on the source model, whose examples transfer to the engine "
                                     "(e.g. pgd20, aa); use '' for none."),
    square_queries: int = option_from(Scoring, "square_queries", help="Queries of the black-box Square attack run "
                                                                    "directly against each engine (0: none)."),
    eps: Optional[str] = Eps,
    norm: str = option_from(Scoring, "norm", help="linf or l2."),
    n: int = option_from(Scoring, "n", help="Test images for accuracy and attacks."),
    dataset: Optional[str] = Dataset,
    data_root: Optional[Path] = DataRoot,
    out: Path = typer.Option(Path("bench-out"), "--out", help="Folder for bench.json, .csv, .md and .png."),
    seed: int = Seed,
    force: bool = Force,
    quiet: bool = Quiet,
    json_out: bool = Json,
) -> None:
    """Latency p50/p90/p99, throughput and speedup over the first variant (with a 95 % interval over interleaved
    rounds) per batch size, peak memory, file size, clean accuracy, transferred white-box and black-box Square
    robustness of each variant; threads pinned."""
    eps_v = eps_value(eps)
    attack_names = list(dict.fromkeys(build_attack(a, eps_v or 1.0, norm).name for a in names_list(attacks)))
    sizes = int_list(batch_sizes, "--batch-sizes")
    options = ctx.meta[MODEL_OPTIONS]
    chosen = parse_variants(variants, engine or [], trust_program=options["trust_program"])
    outputs = check_outputs(out, force)
    log = (lambda msg: None) if json_out or quiet else (lambda msg: typer.echo(msg, err=True))
    with output_lock(*outputs.values()), no_bars(quiet or json_out):
        timing = Timing(batch_sizes=sizes, warmup=warmup, runs=runs, rounds=rounds, threads=threads, device=device)
        scoring = Scoring(attacks=attack_names, eps=eps_v, norm=norm, n=n, square_queries=square_queries, seed=seed)
        report = run_bench(chosen, timing, scoring, dataset=dataset, data_root=data_root, log=log,
                           model_options=options)
        paths = write_outputs(report.to_dict(), out, force)
    warnings = [f"{v.model} (white-box): {w}" for v in report.variants for w in v.source.warnings]
    warnings += [f"{v.name}: {w}" for v in report.variants for w in v.warnings]
    for w in dict.fromkeys(warnings + report.speed_warnings):
        typer.echo(f"warning: {w}", err=True)
    if json_out:
        print(to_json(report))
        return
    console = stdout_console()
    console.print(rich_table(report.to_dict()))
    for line in notes_lines(report.to_dict(), warnings=False):  # the warnings went to stderr
        console.print(line, soft_wrap=True)
    for name, norm in dict.fromkeys((v.model, str(normalization_text(v.normalization))) for v in report.variants):
        console.print(f"{name}: input normalisation {norm}")
    env = report.environment
    console.print(f"{env['cpu']} ({env['cpu_count']} cores), GPU {env['gpu'] or 'none'}; "
                  + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    console.print("outputs: " + ", ".join(str(p) for p in paths.values()))


bench_cmd.command_class = BenchCommand  # `compressor.cli` builds the command with it (when run)
