"""Open any deployable file as a runner ``x -> logits``: ONNX (ONNX Runtime), TensorRT engines, AOTInductor
packages, or a PyTorch model (eager)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from compressor.batching import run_in_range
from compressor.errors import CompressorError


class Runner(Protocol):
    """What the benchmark needs from an engine."""

    kind: str
    providers: list[str]
    batch_range: tuple[int, int | None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def check_batch(self, batch: int) -> None: ...

    def close(self) -> None: ...


class TorchRunner:
    """A PyTorch model in eval mode (fp32, no grad) as a runner; any batch size."""

    kind = "pytorch"
    batch_range: tuple[int, int | None] = (1, None)

    def __init__(self, model: nn.Module, device: str = "cpu"):
        from .base import prepare_model

        self.device = torch.device(device)
        self.model = prepare_model(model).to(self.device)
        self.providers = [f"pytorch-{self.device.type}"]

    def check_batch(self, batch: int) -> None:
        """Any batch size runs."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x.to(self.device, torch.float32)).float().cpu()

    def close(self) -> None:
        """Drop the model."""
        self.model = None


def engine_format(path: str | Path) -> str:
    """The format of an engine file, from its name and contents: onnx, tensorrt or aoti."""
    path = Path(path)
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in (".engine", ".plan", ".trt"):  # TensorRTExporter.suffixes (not imported: lazy optional)
        return "tensorrt"
    if path.suffix == ".pt2":
        from .aoti import is_aoti_package

        if is_aoti_package(path):
            return "aoti"
        raise CompressorError(f"{path} is a torch.export program, not an AOTInductor package: pass it as a MODEL, "
                              "or compile it with compressor export --format aoti")
    raise CompressorError(f"cannot tell the engine format of {path}: use .onnx, .engine/.plan (TensorRT) or .pt2 "
                          "(AOTInductor)")


def open_runner(path: str | Path, *, device: str = "cpu", threads: int | None = None) -> Runner:
    """A runner for the engine file at `path` (one session: close it before opening the next)."""
    path = Path(path)
    if not path.is_file():
        raise CompressorError(f"engine {path} does not exist: check the path")
    fmt = engine_format(path)
    if fmt == "onnx":
        from .onnxruntime import OnnxRunner

        return OnnxRunner(path, device=device, threads=threads)
    if fmt == "tensorrt":
        from .tensorrt import TensorRTRunner

        return TensorRTRunner(path, device=device if device.startswith("cuda") else "cuda", threads=threads)
    from .aoti import AotiRunner

    return AotiRunner(path, device=device, threads=threads)


def run_many(runner: Runner, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of `x` through `runner`, in chunks of at most `batch_size` that fit its batch range."""
    lo, hi = runner.batch_range
    return run_in_range(runner, x, lo, min(hi, batch_size) if hi is not None else batch_size)
