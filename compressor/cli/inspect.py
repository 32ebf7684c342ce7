"""`compressor inspect`: layers, parameters, sparsity and condition numbers of a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import model_summary, open_model
from ..checkpoint import load_model
from ..flops import size_report
from ..reporting import normalization_text, stdout_console, table, to_json
from ..sanity import check_finite_weights
from ..storage import storage_sizes  # weights as dense safetensors vs sparse-safetensors
from . import app
from .options import (DataRoot, Dataset, existing_file, Json, MODEL_OPTIONS, ModelCommand)


@app.command("inspect", cls=ModelCommand)
def inspect_cmd(
    ctx: typer.Context,
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Checkpoint (.pt), state dict with --arch, or .pt2."),
    svd: bool = typer.Option(True, "--svd/--no-svd", help="Compute singular values and condition numbers."),
    dataset: Optional[str] = Dataset,
    data_root: Optional[Path] = DataRoot,
    json_out: bool = Json,
) -> None:
    """Per-layer shape, parameters, sparsity, kappa = sigma_max / sigma_min and spectral norm."""
    existing_file(model_path, "model")
    options = ctx.meta[MODEL_OPTIONS]
    # the dataset is only read to size a zoo --arch (and to give a state dict its input shape and classes); a
    # checkpoint's recorded dataset is not loaded
    data = None
    if options["arch"] is not None:
        loaded, data = open_model(model_path, dataset=dataset, data_root=data_root, **options)
    else:
        loaded = _load(model_path, options)
    input_shape = tuple(loaded.input_shape) or (tuple(data.info.input_shape) if data is not None else ())
    if svd:
        check_finite_weights(loaded.model, str(model_path), hint=", or pass --no-svd to list its layers anyway")
    summary = model_summary(loaded.model, with_svd=svd)
    ck = loaded.checkpoint
    size = size_report(loaded.model, input_shape or None)
    summary.update(macs=size["macs"], cost_layers=size["layers"])
    meta = {"path": str(model_path), "source": loaded.source, "file_bytes": model_path.stat().st_size,
            "normalization": loaded.normalization, "input_shape": list(input_shape)}
    meta.update({k: v for k, v in storage_sizes(loaded.model.state_dict()).items() if k != "ratio"})
    if ck is not None:
        meta.update({"arch": ck.arch, "dataset": ck.dataset.get("name") or (data.info.name if data else None),
                     "input_shape": list(ck.input_shape or input_shape),
                     "num_classes": ck.num_classes or (data.info.num_classes if data else None),
                     "compression": ck.compression,
                     "metrics": ck.provenance.get("metrics", {}), "created": ck.provenance.get("created")})
    report = {**meta, **summary}
    if json_out:
        print(to_json(report))
        return
    console = stdout_console()
    head = [(k, meta[k]) for k in ("arch", "dataset", "source", "num_classes", "file_bytes", "dense_bytes",
                                   "compressed_bytes") if k in meta]
    head.append(("input normalisation", normalization_text(loaded.normalization)))
    head += [(k, summary[k]) for k in ("parameters", "nonzero_parameters", "prunable_parameters", "macs",
                                       "global_sparsity", "kappa_mean", "kappa_max", "lipschitz_bound") if k in summary]
    head += [(f"metric {k}", v) for k, v in meta.get("metrics", {}).items() if isinstance(v, (int, float))]
    console.print(table(str(model_path), ["key", "value"], head))
    cols = ["layer", "type", "shape", "params", "sparsity"] + (["sigma_max", "sigma_min", "kappa"] if svd else [])
    rows = [[r["layer"], r["type"], "x".join(map(str, r["shape"])), r["params"], r["sparsity"]]
            + ([r["sigma_max"], r["sigma_min"], r["kappa"]] if svd else []) for r in summary["layers"]]
    console.print(table("layers (kappa of the weight reshaped to out x in*kh*kw)", cols, rows))
    console.print(table("cost per layer (MACs: one input; Kronecker layers as A1 ⊗ A2)",
                        ["layer", "type", "shape", "params", "nonzeros", "macs"],
                        [[r[k] for k in ("layer", "type", "shape", "params", "nonzeros", "macs")]
                         for r in summary["cost_layers"]]))


def _load(path: Path, options: dict):  # type: ignore[no-untyped-def]
    """The model file alone (no dataset needed): a checkpoint, a .pt2 program or a trusted pickle."""
    return load_model(path, **{k: v for k, v in options.items() if k not in ("num_classes",)})
