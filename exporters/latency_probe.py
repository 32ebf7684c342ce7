"""Latency probes for `prune --target-speedup`: a channel-pruned candidate against the dense model, both timed in
interleaved rounds (`bench`'s machinery) on one runtime, giving the speedup per batch size with its interval.

They register in the core's `RUNTIMES` registry, so the pruning workflow finds them by name without importing this
package (pruners sit below exporters)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from compressor.registry import RUNTIMES

from .base import random_inputs
from .bench import time_variants
from .onnx import export_onnx
from .ort_session import OnnxRunner

ROUNDS, RUNS, WARMUP = 16, 128, 5  # per probe: 16 rounds of 8 timed runs after 5 warm-up runs, per model and batch
# One intra-op thread, as `compressor bench` times by default, so a bench run re-measures what the search chose.
# Measured on a 2-core VM (ResNet-4B, batch 64, same architecture): 1 thread 2.28x [2.25, 2.31]; 2 threads
# 2.01x [1.84, 2.19] in the search and 1.81x [1.66, 1.98] in the bench right after (benchmarks/target_speedup.sh).
THREADS = 1


def _eager(model: nn.Module) -> Any:
    model = model.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def _probe(runners: Sequence[Any], input_shape: Sequence[int], batch_sizes: Sequence[int]) -> dict[int, dict]:
    x = random_inputs(tuple(input_shape), batch=max(batch_sizes), seed=0)
    records = time_variants(runners, x, batch_sizes, [None] * len(runners), warmup=WARMUP, runs=RUNS, rounds=ROUNDS)
    return {b: {**rec["speedup"], "p50_ms": rec["p50"] * 1e3, "reference_p50_ms": ref["p50"] * 1e3}
            for b, rec, ref in zip(batch_sizes, records[1], records[0])}


@RUNTIMES.register("onnxruntime", description="ONNX export of both models, timed in ONNX Runtime on the CPU")
def onnxruntime_probe(reference: nn.Module, candidate: nn.Module, *, input_shape: Sequence[int],
                      batch_sizes: Sequence[int]) -> dict[int, dict]:
    """Speedup of `candidate` over `reference` per batch size, both exported to ONNX and run in ONNX Runtime."""
    with tempfile.TemporaryDirectory() as tmp:
        runners = []
        for name, model in (("reference", reference), ("candidate", candidate)):
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path, input_shape=input_shape, parity=False)
            runners.append(OnnxRunner(path, device="cpu", threads=THREADS))
        try:
            return _probe(runners, input_shape, batch_sizes)
        finally:
            for r in runners:
                r.close()


@RUNTIMES.register("pytorch", description="eager PyTorch on the CPU")
def pytorch_probe(reference: nn.Module, candidate: nn.Module, *, input_shape: Sequence[int],
                  batch_sizes: Sequence[int]) -> dict[int, dict]:
    """Speedup of `candidate` over `reference` per batch size, both run eagerly in PyTorch."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _probe([_eager(reference), _eager(candidate)], input_shape, batch_sizes)
    finally:
        torch.set_num_threads(before)
