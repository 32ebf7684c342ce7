"""ONNX Runtime sessions: execution-provider choice (TensorRT, CUDA, CPU), pinned threads, and a torch-facing runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressor.errors import CompressorError, error_line

# device -> execution providers in order of preference (ORT falls back along the list)
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def choose_providers(device: str = "cpu") -> list[str]:
    """The execution providers to ask for on `device` (cpu, cuda, tensorrt or auto: the best available)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "auto":
        device = next((d for d in ("tensorrt", "cuda") if PROVIDERS[d][0] in available), "cpu")
    key = device.split(":")[0]
    if key not in PROVIDERS:
        raise CompressorError(f"unknown ONNX Runtime device '{device}': choose cpu, cuda, tensorrt or auto")
    wanted = PROVIDERS[key]
    if wanted[0] not in available:
        raise CompressorError(f"ONNX Runtime here has no {wanted[0]} (available: {', '.join(available)}): install "
                              "onnxruntime-gpu instead of onnxruntime (pip install 'compressor[gpu]', see README) or "
                              "use `device` cpu")
    if ":" in device and key != "cpu":
        index = int(device.split(":")[1])
        return [(p, {"device_id": index}) if p != "CPUExecutionProvider" else p for p in wanted]  # type: ignore[misc]
    return list(wanted)


def make_session(path: str | Path, *, device: str = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime InferenceSession on `device` with `threads` intra-op threads (None: ORT's default).

    The providers that really run are ``session.get_providers()``: a provider that fails to initialise
    is dropped by ORT, and that is refused here rather than silently measuring the CPU.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        if threads < 1:
            raise CompressorError(f"`threads` must be >= 1, got {threads}")
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy cores between runs
    opts.log_severity_level = 3  # errors only: ORT's warnings would go to stdout
    providers = choose_providers(device)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise CompressorError(f"ONNX Runtime cannot load {path}: {error_line(exc)}") from None
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if wanted not in session.get_providers():
        raise CompressorError(f"ONNX Runtime could not start {wanted} for {path} (running: "
                              f"{', '.join(session.get_providers())}): check the GPU driver and CUDA libraries")
    return session


class OnnxRunner:
    """Run an ONNX file like a model: ``runner(x) -> logits`` on torch tensors (any batch size the graph takes)."""

    kind = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None):
        self.path = Path(path)
        self.session = make_session(path, device=device, threads=threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _ORT_TYPES.get(inp.type, np.float32)
        self.output_name = self.session.get_outputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        self.precision = self.metadata.get("compressor.precision", "fp16" if self.input_dtype == np.float16 else "fp32")
        batch = inp.shape[0]
        self.batch_range = (1, None) if not isinstance(batch, int) else (batch, batch)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def check_batch(self, batch: int) -> None:
        """Refuse a batch size the graph cannot take (a static batch dimension)."""
        lo, hi = self.batch_range
        if batch < lo or (hi is not None and batch > hi):
            raise CompressorError(f"{self.path} was exported for batch size {lo} only, not {batch}: re-export it "
                                  "with a dynamic batch dimension")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_batch(len(x))
        arr = x.detach().cpu().numpy().astype(self.input_dtype, copy=False)
        out = self.session.run([self.output_name], {self.input_name: arr})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def close(self) -> None:
        """Free the session."""
        self.session = None
