"""`compressor eval`: clean and robust accuracy of a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import evaluate_model, open_model
from ..errors import CompressorError
from ..jobs import DataSource, EvalOptions
from ..progress import quiet as no_bars
from ..reporting import normalization_text, stdout_console, table, to_json
from ..sanity import check_model_fits_data
from . import app
from .options import (DataRoot, Dataset, Device, Download, Eps, eps_value, existing_file, Force, Json, MODEL_SOURCE,
                      ModelCommand, names_list, option_from, Quiet, Seed)

# shown in the table's settings column, in this order, when an attack's protocol has them
SETTINGS = ("steps", "restarts", "queries", "targets", "version", "eot_iter")


@app.command("eval", cls=ModelCommand)
def eval_cmd(
    ctx: typer.Context,
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Checkpoint (.pt), state dict with --arch, or .pt2."),
    dataset: Optional[str] = Dataset,
    data_root: Optional[Path] = DataRoot,
    download: bool = Download,
    attacks: str = typer.Option("fgsm,pgd20", "--attacks",
                                help="Comma-separated attacks, e.g. fgsm,pgd20,cw,aa (see `compressor list attacks`)."),
    eps: Optional[str] = Eps,
    norm: str = option_from(EvalOptions, "norm", help="linf or l2."),
    n: Optional[int] = typer.Option(None, "--n", help="Evaluate the first N images of the split (default: all)."),
    batch_size: int = option_from(EvalOptions, "batch_size"),
    split: str = option_from(EvalOptions, "split", help="test, val, train, or all: every image of the dataset file "
                                                      "(e.g. your own test set as npz:PATH with x, y)."),
    seed: int = Seed,
    device: str = Device,
    channels_last: str = option_from(EvalOptions, "channels_last", help="Attack on channels_last weights: on, off, "
                                     "or auto (on with CUDA). fp32 either way, the same numbers up to float "
                                     "rounding; PGD measured 1.23x faster on a ResNet-20 on a CPU."),
    save_adv: Optional[Path] = typer.Option(
        None, "--save-adv", metavar="FILE",
        help="Write the adversarial examples to FILE (.npz: float32 x_adv_<attack> in [0, 1], y, indices into the "
             "split, clean_correct, robust_<attack>, meta)."),
    force: bool = Force,
    quiet: bool = Quiet,
    json_out: bool = Json,
) -> None:
    """Clean accuracy and accuracy under attacks (eval mode, fp32), with the per-sample worst case."""
    existing_file(model_path, "model")
    source = DataSource(dataset, data_root, download)
    # bad numbers or an output that must not be written fail before anything is loaded
    options = EvalOptions(eps=eps_value(eps), norm=norm, n=n, batch_size=batch_size, split=split, seed=seed,
                          device=device, channels_last=channels_last, save_adv=save_adv, force=force,
                          inputs=(model_path, *source.files()))
    loaded, data = open_model(ctx.meta[MODEL_SOURCE].at(model_path), source, seed=seed)
    if data is None:
        raise CompressorError(f"{model_path} records no dataset: pass --dataset NAME")
    built = options.attacks(names_list(attacks), data)  # built once, at the budget they run with
    ck = loaded.checkpoint
    check_model_fits_data(loaded.model, data, what=str(model_path), split=split,
                          input_shape=ck.input_shape if ck is not None else None)
    with no_bars(quiet or json_out):
        res = evaluate_model(loaded.model, data, built, options, normalization=loaded.normalization)
    res.model = str(model_path)
    for w in res.warnings:
        typer.echo(f"warning: {w}", err=True)
    if json_out:
        print(to_json(res))
        return
    console = stdout_console()
    if res.note:
        console.print(f"note: {res.note}")
    rows = [("clean", res.clean_accuracy, None, res.clean_images_per_s, "")]
    rows += [(name, r.accuracy, r.seconds, r.images_per_s, _settings(r.protocol)) for name, r in res.attacks.items()]
    if res.worst_case_accuracy is not None:
        rows.append(("worst case", res.worst_case_accuracy, None, None, "robust only if every attack fails"))
    console.print(table(f"{model_path} on {res.dataset} {data.describe(split)} (n={res.n}, {norm} eps={res.eps:.4g}, "
                        f"seed {seed})", ["attack", "accuracy", "seconds", "images/s", "settings"], rows))
    versions = res.protocol["versions"]
    console.print(f"input normalisation: {normalization_text(res.normalization)}")
    console.print(f"eval mode, fp32, {res.device}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if res.adversarial_file is not None:
        console.print(f"adversarial examples: {res.adversarial_file['path']}")


def _settings(protocol: dict) -> str:
    """An attack's main settings in a few words (the full protocol is in --json)."""
    return ", ".join(f"{k.replace('_', ' ')} {protocol[k]}" for k in SETTINGS if k in protocol)
