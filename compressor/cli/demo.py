"""`compressor demo`: the main job end to end on the embedded digits data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..io import atomic_write_text
from ..reporting import stdout_console, table, to_json
from .. import evaluate_model, open_model, train, TrainConfig
from . import app
from .options import Force, Json, Seed

ATTACKS = ["fgsm", "pgd20"]


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the checkpoints and the report."),
    epochs: int = typer.Option(15, "--epochs"),
    prune_epochs: int = typer.Option(2, "--prune-epochs", help="TSCNC prune-phase epochs (as many again to fine-tune)."),
    sparsity: float = typer.Option(0.9, "--sparsity", help="TSCNC target sparsity."),
    seed: int = Seed,
    force: bool = Force,
    json_out: bool = Json,
) -> None:
    """Adversarially train a CNN on digits (PGD-AT), prune it with TSCNC, evaluate both on the test split, save them."""
    from pruners import make_pruner, prune

    make_pruner("tscnc", sparsity=sparsity)  # a bad --sparsity fails before anything runs
    ckpt, pruned = out / "model.pt", out / f"pruned-tscnc{round(sparsity * 100)}.pt"
    eps = 0.1
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, adv="pgd", eps=eps, steps=10, seed=seed,
                         val_steps=10, device="cpu")
    trained = train("cnn-small", "digits", ckpt, config, force=force, quiet=json_out)
    loaded, data = open_model(ckpt, seed=seed)
    res = evaluate_model(loaded.model, data, ATTACKS, eps=eps, seed=seed, device="cpu")
    prune_cfg = TrainConfig(batch_size=64, adv="trades", eps=eps, steps=10, seed=seed, device="cpu")
    pr = prune(ckpt, "tscnc", pruned, options={"sparsity": sparsity}, config=prune_cfg, epochs_prune=prune_epochs,
               epochs_finetune=prune_epochs, eval_attack="pgd20", force=force, quiet=json_out,
               console=Console(stderr=True))
    pruned_model, _ = open_model(pruned, seed=seed)
    res_pruned = evaluate_model(pruned_model.model, data, ATTACKS, eps=eps, seed=seed, device="cpu")
    report = {"checkpoint": str(ckpt), "train": {k: trained[k] for k in ("best_epoch", "best", "seconds")},
              "eval": res, "pruned": {"checkpoint": str(pruned), "eval": res_pruned,
                                      **{k: pr[k] for k in ("method", "sparsity_target", "sparsity_achieved",
                                                            "before", "after", "layers", "phases", "seconds")}}}
    report_path = out / "report.json"
    atomic_write_text(report_path, to_json(report))
    if json_out:
        print(to_json(report))
        return
    rows = [("clean accuracy", res["clean_accuracy"], res_pruned["clean_accuracy"])]
    rows += [(f"{k} accuracy", v["accuracy"], res_pruned["attacks"][k]["accuracy"]) for k, v in res["attacks"].items()]
    rows.append(("worst case", res["worst_case_accuracy"], res_pruned["worst_case_accuracy"]))
    for label, key in (("sparsity", "sparsity"), ("kappa mean", "kappa_mean"), ("kappa max", "kappa_max"),
                       ("singular layers", "singular_layers"), ("Lipschitz bound", "lipschitz_bound")):
        rows.append((label, pr["before"][key], pr["after"][key]))
    stdout_console().print(table(
        f"cnn-small on digits: PGD-AT ({trained['seconds']:.0f}s), then TSCNC at {sparsity:.0%} "
        f"({pr['prune_seconds']:.0f}s); test split, n={res['n']}, linf eps={eps}",
        ["metric", "dense", f"tscnc {pr['sparsity_achieved']:.0%}"], rows))
    stdout_console().print(f"checkpoints: {ckpt}, {pruned}\nreport: {report_path}\nnext: compressor inspect {pruned}")
