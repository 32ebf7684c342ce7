"""Open any deployable file as a runner ``x -> logits``: ONNX (ONNX Runtime), TensorRT engines, AOTInductor
packages, or a PyTorch model (eager)."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import CompressorError

from .aoti import AotiRunner, is_aoti_package
from .ort_session import OnnxRunner
from .runners import Runner, TorchRunner, run_many  # noqa: F401  (the runners' public home is here too)
from .tensorrt import TensorRTExporter, TensorRTRunner


def engine_format(path: str | Path) -> str:
    """The format of an engine file, from its name and contents: onnx, tensorrt or aoti."""
    path = Path(path)
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in TensorRTExporter.suffixes:
        return "tensorrt"
    if path.suffix == ".pt2":
        if is_aoti_package(path):
            return "aoti"
        raise CompressorError(f"{path} is a torch.export program, not an AOTInductor package: pass it as a MODEL, "
                              "or compile it with compressor export `format` aoti")
    raise CompressorError(f"cannot tell the engine format of {path}: use .onnx, .engine/.plan (TensorRT) or .pt2 "
                          "(AOTInductor)")


def open_runner(path: str | Path, *, device: str = "cpu", threads: int | None = None,
                trust_program: bool = False) -> Runner:
    """A runner for the engine file at `path` (one session: close it before opening the next); an AOTInductor
    package runs native code from the file, so it opens only with `trust_program`."""
    path = Path(path)
    if not path.is_file():
        raise CompressorError(f"engine {path} does not exist: check the path")
    fmt = engine_format(path)
    if fmt == "onnx":
        return OnnxRunner(path, device=device, threads=threads)
    if fmt == "tensorrt":
        return TensorRTRunner(path, device=device if device.startswith("cuda") else "cuda", threads=threads)
    return AotiRunner(path, device=device, threads=threads, trust_program=trust_program)
