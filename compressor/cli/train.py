"""`compressor train`: standard, PGD-AT or TRADES training to a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import parse_eps, train, TrainConfig
from ..jobs import DataSource, RunOptions, TrainJob
from ..reporting import stdout_console, table, to_json
from . import app
from .options import (Amp, ChannelsLast, CraftMode, DataRoot, Device, Download, Force, Json, Quiet, Seed, command_line,
                      option_from)


@app.command("train")
def train_cmd(
    arch: str = typer.Option("cnn-small", "--arch", "-a", help="Model (see `compressor list models`)."),
    dataset: str = typer.Option("digits", "--dataset", "-d", help="Dataset (see `compressor list datasets`)."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint to write (.pt)."),
    data_root: Optional[Path] = DataRoot,
    download: bool = Download,
    adv: str = option_from(TrainConfig, "adv", help="none, pgd (PGD-AT) or trades."),
    epochs: int = option_from(TrainConfig, "epochs"),
    batch_size: int = option_from(TrainConfig, "batch_size"),
    lr: float = option_from(TrainConfig, "lr"),
    momentum: float = option_from(TrainConfig, "momentum"),
    weight_decay: float = option_from(TrainConfig, "weight_decay"),
    schedule: str = option_from(TrainConfig, "schedule", help="cosine, multistep or constant."),
    eps: Optional[str] = typer.Option(None, "--eps", help="Training budget, e.g. 8/255 (default: the dataset's)."),
    alpha: Optional[str] = typer.Option(None, "--alpha", help="Attack step size (default 2.5 * eps / steps)."),
    steps: int = option_from(TrainConfig, "steps", help="Attack steps while training."),
    beta: float = option_from(TrainConfig, "beta", help="TRADES trade-off."),
    norm: str = option_from(TrainConfig, "norm", help="linf or l2."),
    val_size: Optional[float] = typer.Option(None, "--val-size", help="Validation split carved from train "
                                             "(fraction or count; default: the dataset's)."),
    val_n: int = option_from(TrainConfig, "val_n", help="Validation images used per epoch."),
    select: str = option_from(TrainConfig, "select", help="Checkpoint selection: auto, robust, clean or last."),
    seed: int = Seed,
    device: str = Device,
    amp: str = Amp,
    channels_last: str = ChannelsLast,
    craft_mode: str = CraftMode,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUTPUT.state."),
    keep_state: bool = typer.Option(False, "--keep-state", help="Keep OUTPUT.state after success."),
    force: bool = Force,
    quiet: bool = Quiet,
    json_out: bool = Json,
) -> None:
    """Train a model (standard, PGD-AT or TRADES); the best epoch by validation accuracy is saved."""
    eps_v = parse_eps(eps) if eps is not None else None  # None: the dataset's default budget
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         schedule=schedule, adv=adv, eps=eps_v, alpha=parse_eps(alpha, name="--alpha") if alpha else None,
                         steps=steps, beta=beta, norm=norm, val_n=val_n, select=select, seed=seed, device=device,
                         amp=amp, channels_last=channels_last, craft_mode=craft_mode)
    vs = int(val_size) if val_size is not None and val_size >= 1 else val_size
    job = TrainJob(arch, config, DataSource(dataset, data_root, download, vs),
                   RunOptions(output, force, resume, keep_state, quiet or json_out, command_line()))
    report = train(job)
    if report.get("world_size", 1) > 1 and not _is_rank0():
        return
    if json_out:
        print(to_json(report))
        return
    best = report["best"]
    rows = [(k, best[k]) for k in ("val_clean_acc", "val_pgd_acc", "train_clean_acc", "train_adv_acc", "loss") if k in best]
    stdout_console().print(table(f"trained {arch} on {report['dataset']} ({adv}); best epoch {report['best_epoch']} "
                                 f"-> {output}", ["key", "value"], rows))


def _is_rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0
