"""TensorRT engines built from the ONNX export with TensorRT 10's Python API, and a runner for them.

UNTESTED HERE: the machines this toolkit is tested on have neither a GPU nor TensorRT, so this module is
written to TensorRT 10's documented API (Builder, OnnxParser, BuilderConfig with FP16 / SPARSE_WEIGHTS, an
optimisation profile, a timing cache, the engine inspector) and its tests skip when ``tensorrt`` cannot be
imported. Only the missing-package and bad-input paths are exercised without a GPU.

Install: ``pip install 'compressor[tensorrt]'`` (TensorRT's wheels pull their libraries from NVIDIA's index:
add ``--extra-index-url https://pypi.nvidia.com`` if your pip does not find them).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from compressor.errors import CompressorError
from compressor.folding import prepare_model
from compressor.io import atomic_path, atomic_write, atomic_write_text, check_output

from . import register_exporter
from .base import (Exporter, ExportResult, check_parity, file_bytes, inputs_label, parse_batch_sizes, random_inputs,
                   require, sparse_2to4_layers)
from .runners import run_many
from .onnx import export_onnx

EXTRA_HINT = " (TensorRT's libraries come from NVIDIA's index: add --extra-index-url https://pypi.nvidia.com)"
WORKSPACE_BYTES = 4 * 1024**3


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or one line naming the extra to install."""
    return require("tensorrt", "tensorrt", EXTRA_HINT)


def profile_shapes(batch_sizes: Sequence[int], input_shape: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes: the smallest, the median and the largest batch size."""
    sizes = parse_batch_sizes(batch_sizes)
    opt = sizes[(len(sizes) - 1) // 2] if len(sizes) > 2 else sizes[-1]
    return tuple((b, *input_shape) for b in (sizes[0], opt, sizes[-1]))  # type: ignore[return-value]


def sidecar(engine_path: str | Path) -> Path:
    """The JSON beside an engine recording its precision, profile and build report."""
    return Path(f"{engine_path}.json")


def _collecting_logger(trt: Any, sink: list[str]) -> Any:
    class Collect(trt.ILogger):
        """Keeps TensorRT's messages (the sparse-kernel report comes through the log)."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            bad = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR, trt.ILogger.Severity.WARNING)
            if severity in bad or "sparse" in msg.lower():
                sink.append(msg)

    return Collect()


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, input_shape: Sequence[int], precision: str = "fp32",
                 batch_sizes: Sequence[int] = (1, 64), sparse_weights: bool = False,
                 timing_cache: str | Path | None = None, workspace_bytes: int = WORKSPACE_BYTES) -> dict[str, Any]:
    """Build and write a serialized TensorRT engine from an ONNX file; returns what the build reported.

    FP16 (``precision="fp16"``) lets TensorRT pick half-precision kernels; `sparse_weights` sets
    ``SPARSE_WEIGHTS`` so layers whose weights follow 2:4 may use sparse tensor-core kernels; the layers that
    did are read back from the engine inspector (tactic names) and TensorRT's log. The timing cache is read
    from and written back to `timing_cache` so rebuilds are fast.
    """
    trt = import_tensorrt()
    log: list[str] = []
    logger = _collecting_logger(trt, log)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = [parser.get_error(i) for i in range(parser.num_errors)]
        first = errs[0] if errs else None
        where = f" in node '{first.node_name()}' (op {first.node_operator()})" if first is not None else ""
        raise CompressorError(f"TensorRT cannot parse the ONNX graph{where}: "
                              f"{first.desc() if first is not None else 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # tactic names for the inspector
    if precision == "fp16":
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in TensorRT 10, may go
            raise CompressorError("this GPU has no fast fp16: build with `precision` fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise CompressorError(f"`format` tensorrt builds fp32 or fp16 engines, not {precision}")
    if sparse_weights:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    lo, opt, hi = profile_shapes(batch_sizes, input_shape)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CompressorError(f"TensorRT could not build the engine: {log[-1] if log else 'see the TensorRT log'}")
    seconds = time.perf_counter() - t0
    atomic_write(engine_path, lambda tmp: tmp.write_bytes(bytes(serialized)))
    if timing_cache:
        data = bytes(config.get_timing_cache().serialize())
        atomic_write(timing_cache, lambda tmp: tmp.write_bytes(data))
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(bytes(serialized))
    inspector = engine.create_engine_inspector()
    layers = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)).get("Layers", [])
    sparse = [layer.get("Name", "?") for layer in layers
              if isinstance(layer, dict) and "sparse" in str(layer.get("TacticName", "")).lower()]
    return {"build_seconds": seconds, "profile": {"min": list(lo), "opt": list(opt), "max": list(hi)},
            "sparse_weights_flag": sparse_weights, "sparse_kernel_layers": sparse,
            "sparse_log": [m for m in log if "sparse" in m.lower()], "layers": len(layers),
            "timing_cache": str(timing_cache) if timing_cache else None, "tensorrt": trt.__version__}


class TensorRTRunner:
    """Run a serialized TensorRT engine like a model: ``runner(x) -> logits`` (CUDA, batch within the profile)."""

    kind = "tensorrt"

    def __init__(self, path: str | Path, *, device: str = "cuda", threads: int | None = None):
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise CompressorError(f"{path} is a TensorRT engine and no CUDA GPU is visible")
        self.path = Path(path)
        self.device = torch.device(device if device.startswith("cuda") else "cuda")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if hasattr(self.runtime, "engine_host_code_allowed"):
            # a version-compatible engine can carry a lean runtime library to load: never from a file we were handed
            self.runtime.engine_host_code_allowed = False
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise CompressorError(f"TensorRT cannot load {path}: it was built by another TensorRT version or GPU, or "
                                  "is not an engine: rebuild it here with compressor export `format` tensorrt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.batch_range = (int(lo[0]), int(hi[0]))
        self.providers = [f"tensorrt-{trt.__version__}"]
        meta = json.loads(sidecar(path).read_text()) if sidecar(path).is_file() else {}
        self.precision = meta.get("precision", "unknown")
        self.stream = torch.cuda.Stream(self.device)

    def check_batch(self, batch: int) -> None:
        """Refuse a batch size outside the engine's optimisation profile."""
        lo, hi = self.batch_range
        if not lo <= batch <= hi:
            raise CompressorError(f"batch size {batch} is outside {self.path}'s optimisation profile {lo}..{hi}: "
                                  f"rebuild it with `batch_sizes` covering {batch}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_batch(len(x))
        x = x.detach().to(self.device, torch.float32).contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device=self.device,
                          dtype=torch.float32)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise CompressorError(f"TensorRT failed to run {self.path}")
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return out.float().cpu()

    def close(self) -> None:
        """Free the execution context and engine."""
        self.context = self.engine = None


@register_exporter()
class TensorRTExporter(Exporter):
    """TensorRT engine from the ONNX export (fp32/fp16, SPARSE_WEIGHTS for 2:4, batch profile); extra 'tensorrt'."""

    name = "tensorrt"
    suffixes = (".engine", ".plan", ".trt")
    precisions = ("fp32", "fp16")
    devices = ("cuda",)
    requires = ("tensorrt", "tensorrt")

    @classmethod
    def check(cls, precision: str = "fp32", device: str = "cuda") -> None:
        import_tensorrt()  # the missing package is the first thing to fix
        super().check(precision, device)

    @classmethod
    def open_runner(cls, path: Path, *, device: str = "cuda", threads: int | None = None,
                    trust_program: bool = False) -> TensorRTRunner:
        """The serialized engine at `path` on CUDA (a TensorRT engine runs nowhere else)."""
        return TensorRTRunner(path, device=device if device.startswith("cuda") else "cuda", threads=threads)

    def export(self, model, path, *, input_shape, precision="fp32", batch_sizes=(1, 64), device="cuda",
               sample_inputs=None, parity_inputs=None, force=False, **options: Any) -> ExportResult:
        """The engine, and its sidecar JSON; ``timing_cache=PATH`` (in `options`; default beside the engine) keeps
        TensorRT's kernel timings, so a rebuild is fast."""
        t0 = time.perf_counter()
        self.check(precision, device)
        path = check_output(path, force)
        ready = prepare_model(model)
        sparse_layers = sparse_2to4_layers(ready)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            onnx_res = export_onnx(ready, onnx_path, input_shape=input_shape, sample_inputs=sample_inputs,
                                   parity_inputs=parity_inputs, batch_sizes=batch_sizes,
                                   dynamic_batch=options.get("dynamic_batch", True))
            with atomic_path(path) as engine:  # parity runs on the new engine before it replaces anything
                build = build_engine(onnx_path, engine, input_shape=input_shape, precision=precision,
                                     batch_sizes=batch_sizes, sparse_weights=bool(sparse_layers),
                                     timing_cache=options.get("timing_cache") or Path(path).with_suffix(
                                         ".timing-cache"))
                runner = TensorRTRunner(engine, device=device)
                x = sample_inputs if sample_inputs is not None else random_inputs(input_shape, batch=8, seed=1)
                with torch.no_grad():
                    ref = ready(x.float())
                out = run_many(runner, x)
                runner.close()
                diff, tol = check_parity(ref, out, precision, f"the TensorRT engine {path}")
        build["layers_2to4"] = sparse_layers
        # TensorRT keeps no free-form metadata in an engine: what the runner reports goes in a JSON beside it
        atomic_write_text(sidecar(path), json.dumps({"format": "tensorrt", "precision": precision,
                                                     "input_shape": list(input_shape), **build}))
        return ExportResult(path=str(path), format=self.name, precision=precision, opset=onnx_res.opset,
                            file_bytes=file_bytes(path), max_abs_diff=diff, tolerance=tol,
                            parity_inputs=inputs_label(sample_inputs, len(x), parity_inputs),
                            providers=runner.providers,
                            batch_sizes=parse_batch_sizes(batch_sizes), seconds=time.perf_counter() - t0,
                            details=build)

