"""torch.export + AOTInductor: an ahead-of-time compiled ``.pt2`` package for CPU or CUDA, and its runner.

Compiling needs a C++ compiler (and nvcc for CUDA). The package records its batch-size range, input shape
and precision in AOTInductor's metadata, so a runner refuses batch sizes outside the compiled range instead of
running them silently. On CUDA, `semi_structured_speedup` measures PyTorch's 2:4 sparse kernels on the model's
2:4 Linear layers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from compressor.errors import CompressorError, error_line
from compressor.folding import prepare_model
from compressor.io import atomic_write, check_output
from compressor.pt2_trust import check_native_trusted, is_aoti_package

from . import register_exporter
from .base import (Exporter, ExportResult, check_parity, file_bytes, follows_2to4, inputs_label, parse_batch_sizes,
                   random_inputs)
from .latency import measure_latency
from .runners import run_many
from .onnx import trace

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@contextlib.contextmanager
def _no_cuda_home_warning() -> Iterator[None]:
    """Silence torch's 'No CUDA runtime is found' log line, printed on every CPU-only compile or load."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_aoti(model: nn.Module, path: str | Path, *, input_shape: Sequence[int], precision: str = "fp32",
                batch_sizes: Sequence[int] = (1, 64), device: str = "cpu", sample_inputs: torch.Tensor | None = None,
                parity: bool = True, parity_inputs: str | None = None, force: bool = False) -> ExportResult:
    """Compile `model` (masks folded) for batch sizes min..max of `batch_sizes` on `device` into a ``.pt2`` package.

    On CUDA, when Linear layers follow 2:4, ``details["semi_structured_2to4"]`` also reports whether PyTorch's
    semi-structured sparse kernels are faster than the dense ones for them (`semi_structured_speedup`).
    """
    t0 = time.perf_counter()
    path = check_output(path, force)
    if path.suffix != ".pt2":
        raise CompressorError(f"an AOTInductor package must end in .pt2, not '{path.suffix}': use -o {path.stem}.pt2")
    sizes = parse_batch_sizes(batch_sizes)
    lo, hi = sizes[0], sizes[-1]
    dev = torch.device(device)
    ready = prepare_model(model, precision).to(dev)
    example = random_inputs(input_shape, batch=min(max(2, lo), hi)).to(dev, _DTYPES[precision])
    program = trace(ready, example, dynamic_batch=hi > lo, batch_range=(lo, hi))
    meta = {"compressor.format": "aoti", "compressor.precision": precision, "compressor.device": dev.type,
            "compressor.input_shape": ",".join(map(str, input_shape)), "compressor.batch_min": str(lo),
            "compressor.batch_max": str(hi)}
    result = ExportResult(path=str(path), format="aoti", precision=precision, batch_sizes=sizes,
                          providers=[f"aotinductor-{dev.type}"], details={"batch_range": [lo, hi], "device": str(dev)})

    def compile_to(tmp: Path) -> None:  # the temporary file keeps the .pt2 suffix the packager insists on
        try:
            with _no_cuda_home_warning():
                torch._inductor.aoti_compile_and_package(program, package_path=str(tmp),
                                                         inductor_configs={"aot_inductor.metadata": meta})
        except Exception as exc:
            raise CompressorError(f"AOTInductor compilation failed ({type(exc).__name__}: {error_line(exc)}): check "
                                  "that a C++ compiler (and nvcc for CUDA) is installed") from None

    def verify(tmp: Path) -> None:  # parity on the new package, before it replaces anything
        if not parity:
            return
        x = sample_inputs if sample_inputs is not None else random_inputs(input_shape, batch=8, seed=1)
        runner = AotiRunner(tmp, device=str(dev), trust_program=True)  # the package this call just compiled
        out = run_many(runner, x)
        with torch.no_grad():
            ref = torch.cat([ready(x[i:i + hi].to(dev, _DTYPES[precision])).float().cpu()
                             for i in range(0, len(x), hi)])
        runner.close()
        result.max_abs_diff, result.tolerance = check_parity(ref, out, precision, f"the AOTInductor package {path}")
        result.parity_inputs = inputs_label(sample_inputs, len(x), parity_inputs)

    atomic_write(path, compile_to, verify)
    result.file_bytes = file_bytes(path)
    if dev.type == "cuda" and any(isinstance(m, nn.Linear) and follows_2to4(m.weight) for m in ready.modules()):
        result.details["semi_structured_2to4"] = semi_structured_speedup(model, batch_size=hi)
    result.seconds = time.perf_counter() - t0
    return result


class AotiRunner:
    """Run an AOTInductor package like a model: ``runner(x) -> logits`` (fp32, CPU) within its batch range.

    Loading the package runs its shared library, so it loads only with `trust_program`."""

    kind = "aoti"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 trust_program: bool = False):
        self.path = Path(path)
        if not is_aoti_package(path):
            raise CompressorError(f"{path} is not an AOTInductor package: export one with `format` aoti")
        check_native_trusted(path, trust_program)
        try:
            with _no_cuda_home_warning():
                self.model = torch._inductor.aoti_load_package(str(path))
        except Exception as exc:
            raise CompressorError(f"cannot load the AOTInductor package {path}: {error_line(exc)}") from None
        self.metadata = {k: str(v) for k, v in self.model.get_metadata().items()}
        self.precision = self.metadata.get("compressor.precision", "fp32")
        self.device = torch.device(self.metadata.get("compressor.device", "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise CompressorError(f"{path} was compiled for CUDA and no GPU is visible: re-export it with `device` cpu")
        self.batch_range = (int(self.metadata.get("compressor.batch_min", 1)),
                            int(self.metadata.get("compressor.batch_max", 1)))
        self.providers = [f"aotinductor-{self.device.type}"]

    def check_batch(self, batch: int) -> None:
        """Refuse a batch size outside the compiled range (AOTInductor itself would run it unchecked)."""
        lo, hi = self.batch_range
        if not lo <= batch <= hi:
            raise CompressorError(f"batch size {batch} is outside {self.path}'s compiled range {lo}..{hi}: "
                                  f"re-export with `batch_sizes` covering {batch}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_batch(len(x))
        with torch.no_grad():
            out = self.model(x.detach().to(self.device, _DTYPES[self.precision]))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.float().cpu()

    def close(self) -> None:
        """Drop the loaded package."""
        self.model = None


def semi_structured_speedup(model: nn.Module, batch_size: int = 64, runs: int = 50,
                            precision: str = "fp16") -> list[dict[str, Any]]:
    """On CUDA: per 2:4 Linear layer, latency of the dense matmul vs `to_sparse_semi_structured` (seconds).

    `precision` is fp16 or bf16. Layers the sparse kernels cannot take (shape, dtype or GPU generation) are
    listed with the reason; ``kernel`` names the sparse tensor class (cuSPARSELt or CUTLASS) that ran.
    """
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise CompressorError(f"2:4 semi-structured timing takes fp16 or bf16, not '{precision}'")
    if not torch.cuda.is_available():
        raise CompressorError("2:4 semi-structured kernels need a CUDA GPU (compute capability >= 8.0) and none is "
                              "visible")
    from torch.sparse import to_sparse_semi_structured

    dtype = dtypes[precision]
    ready = prepare_model(model, "fp32").to("cuda", dtype)
    rows = []
    for name, m in ready.named_modules():
        if not isinstance(m, nn.Linear) or not follows_2to4(m.weight):
            continue
        x = torch.randn(batch_size, m.in_features, device="cuda", dtype=dtype)
        w = m.weight.detach()
        row: dict[str, Any] = {"layer": name, "shape": list(w.shape), "precision": precision,
                               "batch_size": batch_size}
        try:
            sw = to_sparse_semi_structured(w)
            row["kernel"] = type(sw).__name__
            exact = float((torch.nn.functional.linear(x, sw) - torch.nn.functional.linear(x, w)).abs().max())
            dense = measure_latency(lambda: torch.nn.functional.linear(x, w), runs=runs, cuda_events=True)
            sparse = measure_latency(lambda: torch.nn.functional.linear(x, sw), runs=runs, cuda_events=True)
            row.update(dense_p50=dense["p50"], sparse_p50=sparse["p50"], speedup=dense["p50"] / sparse["p50"],
                       max_abs_diff=exact)
        except Exception as exc:  # unsupported shape / GPU: report, do not fail the whole measurement
            row["unsupported"] = f"{type(exc).__name__}: {error_line(exc, 120)}"
        rows.append(row)
    return rows


@register_exporter()
class AotiExporter(Exporter):
    """torch.export + AOTInductor package (.pt2) for CPU or CUDA; fp32 (fp16 on CUDA); batch range min..max."""

    name = "aoti"
    suffixes = (".pt2",)
    precisions = ("fp32", "fp16")
    devices = ("cpu", "cuda")

    @classmethod
    def check(cls, precision: str = "fp32", device: str = "cpu") -> None:
        super().check(precision, device)
        if precision == "fp16" and not device.startswith("cuda"):
            raise CompressorError("`format` aoti `precision` fp16 needs `device` cuda: CPU fp16 kernels are slow "
                                  "and inexact")

    def export(self, model, path, *, input_shape, precision="fp32", batch_sizes=(1, 64), device="cpu",
               sample_inputs=None, parity_inputs=None, force=False, **options: Any) -> ExportResult:
        return export_aoti(model, path, input_shape=input_shape, precision=precision, batch_sizes=batch_sizes,
                           device=device, sample_inputs=sample_inputs, parity_inputs=parity_inputs, force=force)

    @classmethod
    def opens(cls, path: Path) -> bool:
        """A .pt2 file that is an AOTInductor package; a torch.export program (also .pt2) is refused in one line."""
        if path.suffix not in cls.suffixes:
            return False
        if not is_aoti_package(path):
            raise CompressorError(f"{path} is a torch.export program, not an AOTInductor package: pass it as a "
                                  "MODEL, or compile it with compressor export `format` aoti")
        return True

    @classmethod
    def check_trusted(cls, path: Path, trust_program: bool) -> None:
        """Loading a package runs its shared library: refuse it unless `trust_program`."""
        check_native_trusted(path, trust_program)

    @classmethod
    def open_runner(cls, path: Path, *, device: str = "cpu", threads: int | None = None,
                    trust_program: bool = False) -> AotiRunner:
        """The package at `path`, loaded only with `trust_program` (its native code runs on load)."""
        return AotiRunner(path, device=device, threads=threads, trust_program=trust_program)
