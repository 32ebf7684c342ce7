"""ONNX export: masks folded, dynamic batch, opset >= 17, checked in full, and parity-checked in ONNX Runtime."""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import onnx
import torch
from torch import nn

from compressor.errors import CompressorError, error_line
from compressor.folding import prepare_model
from compressor.io import atomic_write, check_output
from compressor.settings import with_options

from . import register_exporter
from .base import (Exporter, ExportResult, check_parity, discard_on_error, file_bytes, inputs_label, parse_batch_sizes,
                   random_inputs)
from .ort_session import OnnxRunner

MIN_OPSET = 17
EXTERNAL_DATA_BYTES = 2 * 1024**3  # protobuf's 2 GB limit: only bigger models get a separate weights file
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_OP_PATTERNS = (re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)"),
                re.compile(r"target=torch\.ops\.([\w.]+)"),
                re.compile(r"\b(aten\.[\w.]+)"))


def layer_of(node: torch.fx.Node) -> str:
    """The qualified name of the module a graph node was traced from ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return str(path).replace("L['self'].", "").replace("L__self__.", "")


def _op_name(exc: BaseException) -> str | None:
    text = "\n".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            return ".".join(g for g in m.groups() if g)
    return None


def unsupported_op_error(exc: BaseException, program: torch.export.ExportedProgram | None,
                         model: nn.Module, fmt: str = "ONNX") -> CompressorError:
    """One line naming the op that `fmt` cannot express and the layer that uses it."""
    op = _op_name(exc)
    layer = ""
    if op and program is not None:
        short = op.removesuffix(".default")
        for node in program.graph.nodes:
            target = str(node.target) if node.op == "call_function" else ""
            if target and (target == op or target.removesuffix(".default") == short):
                layer = layer_of(node)
                break
    if layer:
        layer_type = type(model.get_submodule(layer)).__name__ if _has_submodule(model, layer) else "?"
        where = f"layer '{layer}' ({layer_type})"
    else:
        where = "the model's top-level forward"
    if op is None:
        return CompressorError(f"{fmt} export failed in {where}: {error_line(exc, 160)}")
    return CompressorError(f"{fmt} cannot express the op '{op}' used by {where}: replace that layer with standard "
                           "ops, or choose another `format`")


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def trace(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = True,
          batch_range: tuple[int, int | None] = (1, None)) -> torch.export.ExportedProgram:
    """`torch.export` of `model` on `example`, with a dynamic batch dimension unless told otherwise."""
    shapes = None
    if dynamic_batch:
        lo, hi = batch_range
        batch = torch.export.Dim("batch", min=lo, max=hi) if hi is not None else torch.export.Dim("batch", min=lo)
        shapes = ({0: batch},)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)
    except Exception as exc:
        raise unsupported_op_error(exc, None, model, "torch.export") from None


def _save(program: Any, path: Path, external: bool) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        program.save(str(path), external_data=external)


@dataclass(frozen=True)
class GraphSpec:
    """What the written graph declares: its `opset`, the `batch_sizes` it records, and a symbolic batch dimension
    (within `batch_range`; an upper end of None: unbounded) unless `dynamic_batch` is False (then fixed at the first
    size)."""

    opset: int = 18
    batch_sizes: Sequence[int] = (1,)
    dynamic_batch: bool = True
    batch_range: tuple[int, int | None] = (1, None)


def export_onnx(model: nn.Module, path: str | Path, *, input_shape: Sequence[int], parity: bool = True,
                force: bool = False, sample_inputs: torch.Tensor | None = None, parity_inputs: str | None = None,
                precision: str = "fp32", graph: GraphSpec | None = None, **graph_options: Any) -> ExportResult:
    """Export `model` (masks folded, on a copy) to one self-contained ONNX file and check it.

    The `graph` (or its fields: ``opset=``, ``batch_sizes=``, ``dynamic_batch=``, ``batch_range=``) has a symbolic
    (dynamic) batch dimension unless it says otherwise, input ``input`` (N x C x H x W pixels in [0, 1]) and output
    ``logits``. Weights go to a separate file only above 2 GB. ``onnx.checker`` runs with ``full_check``; with
    `parity`, ONNX Runtime (CPU) runs `sample_inputs` (random pixels when None) and the export fails above 1e-4 max
    |delta logit|.
    """
    t0 = time.perf_counter()
    (graph,) = with_options("export_onnx", graph_options, GraphSpec if graph is None else graph)
    opset, dynamic_batch = graph.opset, graph.dynamic_batch
    if opset < MIN_OPSET:
        raise CompressorError(f"`opset` {opset} is too old: use {MIN_OPSET} or newer")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise CompressorError(f"`opset` {opset} is newer than the installed onnx {onnx.__version__} supports "
                              f"(up to {newest}): use {newest} or lower, or upgrade onnx")
    if precision != "fp32":
        raise CompressorError(f"ONNX export writes fp32 graphs, not {precision}: build fp16 engines from it with "
                              "`format` tensorrt `precision` fp16")
    path = check_output(path, force)
    sizes = parse_batch_sizes(graph.batch_sizes)
    ready = prepare_model(model)
    # a dynamic batch needs an example batch > 1 (torch.export specialises sizes 0 and 1)
    example = random_inputs(input_shape, batch=max(2, min(sizes[-1], 4)) if dynamic_batch else sizes[0])
    program = trace(ready, example, dynamic_batch, graph.batch_range)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset,
                                             input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
    except Exception as exc:
        raise unsupported_op_error(exc, program, ready) from None
    weight_bytes = sum(t.numel() * t.element_size() for t in ready.state_dict().values())
    external = weight_bytes > EXTERNAL_DATA_BYTES
    meta = {"compressor.format": "onnx", "compressor.precision": precision,
            "compressor.input_shape": ",".join(map(str, input_shape)),
            "compressor.batch_sizes": ",".join(map(str, sizes)),
            "compressor.dynamic_batch": str(bool(dynamic_batch)).lower()}
    onnx_program.model.metadata_props.update(meta)
    result = ExportResult(path=str(path), format="onnx", precision=precision, opset=opset, batch_sizes=sizes,
                          details={"external_data": external, "dynamic_batch": dynamic_batch})

    def verify(file: Path) -> None:  # on the new file, before it replaces anything
        check_onnx(file)
        if parity:
            x = sample_inputs if sample_inputs is not None else random_inputs(input_shape, batch=8, seed=1)
            runner = OnnxRunner(file, device="cpu", threads=1)
            batches = [x] + ([x[:1]] if dynamic_batch and len(x) > 1 else [])
            if not dynamic_batch:
                batches = [x[i:i + len(example)] for i in range(0, len(x) - len(example) + 1, len(example))] or [example]
            with torch.no_grad():
                ref = torch.cat([ready(b.float()) for b in batches])
            out = torch.cat([runner(b) for b in batches])
            result.providers = runner.providers
            runner.close()
            result.max_abs_diff, result.tolerance = check_parity(ref, out, precision, f"the ONNX export {path}")
            result.parity_inputs = inputs_label(sample_inputs, len(x), parity_inputs)

    if external:  # the weights file is named after the graph file, so it is written in place
        _save(onnx_program, path, True)
        discard_on_error(path, lambda: verify(path))
    else:
        atomic_write(path, lambda tmp: _save(onnx_program, tmp, False), verify)
    result.file_bytes = file_bytes(path) + (file_bytes(Path(f"{path}.data")) if external else 0)
    result.seconds = time.perf_counter() - t0
    return result


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` with full shape/type inference; a failure is one line."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise CompressorError(f"the exported ONNX graph fails onnx.checker: {error_line(exc)}") from None


def onnx_initializers(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Initializer name -> shape of an ONNX file (weights not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


@register_exporter()
class OnnxExporter(Exporter):
    """ONNX (opset >= 17, dynamic batch, masks folded), parity-checked in ONNX Runtime; fp32."""

    name = "onnx"
    suffixes = (".onnx",)
    precisions = ("fp32",)
    devices = ("cpu", "cuda")

    def export(self, model, path, *, input_shape, precision="fp32", batch_sizes=(1,), sample_inputs=None,
               parity_inputs=None, force=False, opset: int = GraphSpec.opset, **options: Any) -> ExportResult:
        # `device` (in `options`) does not matter: the graph is traced on the CPU and runs anywhere
        graph = GraphSpec(opset, batch_sizes, options.get("dynamic_batch", True),
                          options.get("batch_range") or (1, None))
        return export_onnx(model, path, input_shape=input_shape, force=force, precision=precision,
                           sample_inputs=sample_inputs, parity_inputs=parity_inputs, graph=graph)

    @classmethod
    def open_runner(cls, path: Path, *, device: str = "cpu", threads: int | None = None,
                    trust_program: bool = False) -> OnnxRunner:
        """An ONNX Runtime session on `path` (any ONNX file, ORT-optimised ones too)."""
        return OnnxRunner(path, device=device, threads=threads)
