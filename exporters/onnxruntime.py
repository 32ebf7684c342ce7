"""The ``onnxruntime`` exporter: ONNX with ONNX Runtime's own graph optimisations saved for one provider."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from compressor.folding import prepare_model
from compressor.io import atomic_path, check_output

from . import register_exporter
from .base import Exporter, ExportResult, check_parity, file_bytes, inputs_label, random_inputs
from .onnx import export_onnx
from .ort_session import OnnxRunner, choose_providers
from .runners import run_many


def export_ort_optimized(model: Any, path: str | Path, *, input_shape: Any, device: str = "cpu",
                         sample_inputs: torch.Tensor | None = None, parity_inputs: str | None = None,
                         force: bool = False, batch_sizes: Any = (1,)) -> Any:
    """ONNX export, then ONNX Runtime's extended graph optimisations for `device` saved as a new ONNX file.

    The saved graph has ORT's fused ops (``com.microsoft`` domain) and loads only in ONNX Runtime, where sessions
    then start without re-optimising. Parity is checked in a session on `device`.
    """
    import onnxruntime as ort

    t0 = time.perf_counter()
    path = check_output(path, force)
    providers = choose_providers(device)
    with tempfile.TemporaryDirectory() as tmp:
        plain = export_onnx(model, Path(tmp) / "model.onnx", input_shape=input_shape, sample_inputs=sample_inputs,
                            parity_inputs=parity_inputs, batch_sizes=batch_sizes)
        with atomic_path(path) as out:  # parity runs on the new file before it replaces anything
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.optimized_model_filepath = str(out)
            opts.log_severity_level = 3
            ort.InferenceSession(str(Path(tmp) / "model.onnx"), sess_options=opts, providers=providers)
            runner = OnnxRunner(out, device=device, threads=1)
            x = sample_inputs if sample_inputs is not None else random_inputs(input_shape, batch=8, seed=1)
            with torch.no_grad():
                ref = prepare_model(model)(x.float())
            out_logits = run_many(runner, x)
            ran_on = runner.providers
            runner.close()
            diff, tol = check_parity(ref, out_logits, "fp32", f"the ONNX Runtime-optimised graph {path}")
    result = ExportResult(path=str(path), format="onnxruntime", opset=plain.opset, file_bytes=file_bytes(path),
                          providers=ran_on, batch_sizes=plain.batch_sizes, max_abs_diff=diff, tolerance=tol,
                          parity_inputs=inputs_label(sample_inputs, len(x), parity_inputs),
                          details={"optimization": "extended", "optimized_for": providers[0] if isinstance(
                              providers[0], str) else providers[0][0]})
    result.seconds = time.perf_counter() - t0
    return result


@register_exporter()
class OnnxRuntimeExporter(Exporter):
    """ONNX with ONNX Runtime's fused-graph optimisations for cpu/cuda/tensorrt providers (loads in ORT only)."""

    name = "onnxruntime"
    suffixes = (".onnx",)
    precisions = ("fp32",)
    devices = ("cpu", "cuda", "tensorrt")

    def export(self, model, path, *, input_shape, precision="fp32", batch_sizes=(1,), device="cpu",
               sample_inputs=None, parity_inputs=None, force=False, **options: Any) -> ExportResult:
        return export_ort_optimized(model, path, input_shape=input_shape, device=device, sample_inputs=sample_inputs,
                                    parity_inputs=parity_inputs, force=force, batch_sizes=batch_sizes)
