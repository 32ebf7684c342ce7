"""`compressor demo`: the main job end to end on the embedded digits data."""

from __future__ import annotations

from pathlib import Path

import typer

from ..io import atomic_write_text
from ..reporting import stdout_console, table, to_json
from .. import evaluate_model, open_model, train, TrainConfig
from . import app
from .options import Force, Json, Seed


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the checkpoint and the report."),
    epochs: int = typer.Option(15, "--epochs"),
    seed: int = Seed,
    force: bool = Force,
    json_out: bool = Json,
) -> None:
    """Adversarially train a CNN on digits (PGD-AT), evaluate clean/FGSM/PGD-20 on the test split, save it."""
    ckpt = out / "model.pt"
    eps = 0.1
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, adv="pgd", eps=eps, steps=10, seed=seed,
                         val_steps=10, device="cpu")
    trained = train("cnn-small", "digits", ckpt, config, force=force, quiet=json_out)
    loaded, data = open_model(ckpt, seed=seed)
    res = evaluate_model(loaded.model, data, ["fgsm", "pgd20"], eps=eps, seed=seed, device="cpu")
    report = {"checkpoint": str(ckpt), "train": {k: trained[k] for k in ("best_epoch", "best", "seconds")},
              "eval": res}
    report_path = out / "report.json"
    atomic_write_text(report_path, to_json(report))
    if json_out:
        print(to_json(report))
        return
    rows = [("clean", res["clean_accuracy"])] + [(k, v["accuracy"]) for k, v in res["attacks"].items()]
    rows.append(("worst case", res["worst_case_accuracy"]))
    stdout_console().print(table(f"cnn-small, PGD-AT on digits ({trained['seconds']:.0f}s); test split, "
                                 f"n={res['n']}, linf eps={eps}", ["attack", "accuracy"], rows))
    stdout_console().print(f"checkpoint: {ckpt}\nreport: {report_path}\nnext: compressor inspect {ckpt}")
