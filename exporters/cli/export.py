"""`compressor export`: turn a model file into a deployable artifact and print its parity check."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch
import typer

from compressor.cli.options import (DataRoot, Dataset, existing_file, Force, Json, MODEL_OPTIONS, ModelCommand, Quiet)
from compressor.data import dataset_files
from compressor.errors import CompressorError
from compressor.io import check_output, output_lock
from compressor.parsing import parse_int_list
from compressor.progress import bar, quiet as no_bars
from compressor.registry import EXPORTERS
from compressor.reporting import normalization_text, stdout_console, table, to_json
from compressor.sanity import check_finite_weights
from compressor.workflows import open_model

from .. import get_exporter
from ..base import parse_batch_sizes
from ..engines import or_list, written_suffixes


class RegistryHelpCommand(ModelCommand):
    """A model command whose option help names the registered exporters, read from the registry when the command is
    built (so a plugin's exporter shows too); `helps` maps a parameter to the function that writes its help."""

    helps: ClassVar[dict[str, Callable[[], str]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.name in self.helps:
                param.help = self.helps[param.name]()  # type: ignore[attr-defined]


class ExportCommand(RegistryHelpCommand):
    """`export` with its formats and file endings from the registry."""

    helps = {"fmt": lambda: f"{or_list(EXPORTERS.names())} (see `compressor list exporters`).",
             "output": lambda: f"File to write ({', '.join(written_suffixes())})."}


def int_list(text: str, name: str) -> list[int]:
    """Parse batch sizes ``1,64`` (positive integers up to MAX_BATCH_SIZE, no empty items), before any work."""
    return parse_batch_sizes(parse_int_list(text, name=name, minimum=1))


def pick_device(device: str, devices: tuple[str, ...]) -> str:
    """`device`, or for auto the exporter's best: CUDA when it runs there and a GPU is visible, else CPU."""
    if device != "auto":
        return device
    if "cuda" in devices and (torch.cuda.is_available() or "cpu" not in devices):
        return "cuda"
    return "cpu"


def sample_inputs(data, n: int):  # type: ignore[no-untyped-def]
    """The first `n` test images of `data` (float, [0, 1]) and a label for the report, or (None, None)."""
    if data is None or n < 1:
        return None, None
    part = data.split("test").head(n)
    return part.float_images(), f"{data.info.name} test[:{len(part)}]"


def export_cmd(
    ctx: typer.Context,
    model_path: Path = typer.Argument(..., metavar="MODEL", help="Checkpoint (.pt), state dict with --arch, or .pt2."),
    fmt: str = typer.Option(..., "--format", "-f"),  # help: ExportCommand, from the registry
    output: Path = typer.Option(..., "--output", "-o"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 (tensorrt; aoti on CUDA)."),
    batch_sizes: str = typer.Option("1,64", "--batch-sizes",
                                    help="Batch sizes the artifact must serve: TensorRT's profile and AOTInductor's "
                                         "range are min..max; ONNX keeps a dynamic batch dimension."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (tensorrt needs cuda)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (>= 17)."),
    parity_n: int = typer.Option(64, "--parity-n",
                                 help="Parity runs on this many test images of the checkpoint's dataset "
                                      "(random pixels when it records none)."),
    dataset: Optional[str] = Dataset,
    data_root: Optional[Path] = DataRoot,
    force: bool = Force,
    quiet: bool = Quiet,
    json_out: bool = Json,
) -> None:
    """Export a model to ONNX, a TensorRT engine, an AOTInductor package or a compressed checkpoint, checked against
    PyTorch (max |delta logit|; fp32 fails above 1e-4)."""
    existing_file(model_path, "model")
    exporter = get_exporter(fmt)
    dev = pick_device(device, exporter.devices)
    exporter.check(precision, dev)
    sizes = int_list(batch_sizes, "--batch-sizes")
    check_output(output, force, inputs=[model_path, *dataset_files(dataset)])
    if exporter.suffixes and output.suffix not in exporter.suffixes:
        raise CompressorError(f"--format {fmt} writes {' or '.join(exporter.suffixes)} files: "
                              f"use -o {output.with_suffix(exporter.suffixes[0])}")
    options = ctx.meta[MODEL_OPTIONS]
    loaded, data = open_model(model_path, dataset=dataset, data_root=data_root, **options)
    ck = loaded.checkpoint
    check_finite_weights(loaded.model, str(model_path))
    input_shape = tuple(loaded.input_shape) or (tuple(data.info.input_shape) if data is not None else ())
    if not input_shape:
        raise CompressorError(f"{model_path} records no input shape: pass --dataset NAME")
    x, label = sample_inputs(data, parity_n)
    note = None
    fixed = getattr(loaded.model, "static_batch", None)  # a .pt2 program traced for one batch size
    if fixed is not None and sizes != [fixed]:
        note = (f"{model_path} was exported for batch size {fixed} only, so the artifact serves batch {fixed} (not "
                f"{','.join(map(str, sizes))}): export the program with a dynamic batch dimension for more")
        sizes = [fixed]
    lo, hi = getattr(loaded.model, "batch_range", None) or (1, None)  # a dynamic .pt2 program's own range
    if not lo <= sizes[0] or (hi is not None and sizes[-1] > hi):
        raise CompressorError(f"{model_path} serves batch sizes {lo}..{hi}: pass --batch-sizes within that range")
    # a pulsing bar with the elapsed time: AOTInductor and TensorRT builds take tens of seconds
    with output_lock(output), no_bars(quiet or json_out), bar(f"export {exporter.name}"):
        result = exporter.export(loaded.model, output, input_shape=input_shape, precision=precision,
                                 batch_sizes=sizes, device=dev, sample_inputs=x, parity_inputs=label, force=force,
                                 opset=opset, checkpoint=ck, dynamic_batch=fixed is None, batch_range=(lo, hi))
    report = {"model": str(model_path), **result.as_dict(), "normalization": loaded.normalization,
              **({"note": note} if note else {})}
    if json_out:
        print(to_json(report))
        return
    rows = [("format", result.format), ("precision", result.precision), ("file bytes", result.file_bytes)]
    if result.opset is not None:
        rows.append(("opset", result.opset))
    if result.batch_sizes:
        rows.append(("batch sizes", ",".join(map(str, result.batch_sizes))))
    if result.providers:
        rows.append(("runs on", ", ".join(result.providers)))
    for key in ("dense_bytes", "compressed_bytes", "ratio", "sparse_kernel_layers", "layers_2to4"):
        if key in result.details:
            rows.append((key.replace("_", " "), result.details[key]))
    rows.append(("seconds", result.seconds))
    rows.append(("input normalisation", normalization_text(loaded.normalization)))
    console = stdout_console()
    if note:
        console.print(f"note: {note}")
    console.print(table(f"{model_path} -> {result.path}", ["key", "value"], rows))
    semi = result.details.get("semi_structured_2to4")
    if semi:
        console.print(table("2:4 Linear layers: dense vs to_sparse_semi_structured (fp16, CUDA)",
                            ["layer", "dense p50 s", "sparse p50 s", "speedup", "note"],
                            [(r["layer"], r.get("dense_p50"), r.get("sparse_p50"), r.get("speedup"),
                              r.get("unsupported", "")) for r in semi]))
    if result.max_abs_diff is not None:
        console.print(f"parity: max |delta logit| = {result.max_abs_diff:.3g} on {result.parity_inputs} "
                      f"(tolerance {result.tolerance:.3g}): OK")
    else:
        console.print("parity: not checked")


export_cmd.command_class = ExportCommand  # `compressor.cli` builds the command with it (when run)
