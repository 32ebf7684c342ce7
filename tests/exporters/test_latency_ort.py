"""measure_latency's statistics and synchronisation; ONNX Runtime sessions: providers really used, threads, errors."""

from __future__ import annotations

import time

import pytest
import torch

from compressor.errors import CompressorError
from exporters.latency import measure_latency
from exporters.ort_session import choose_providers, make_session


def test_latency_percentiles_warmup_and_sync():
    calls, syncs = [], []
    res = measure_latency(lambda: (calls.append(1), time.sleep(0.002)), warmup=3, runs=7, sync=lambda: syncs.append(1),
                          batch_size=4)
    assert len(calls) == 10 and len(syncs) == 8  # one after warm-up, one per timed run
    assert 0.002 <= res["min"] <= res["p50"] <= res["p90"] <= res["p99"] <= res["max"]
    assert res["throughput"] == pytest.approx(4 / res["mean"])
    with pytest.raises(CompressorError, match="runs >= 1"):
        measure_latency(lambda: None, runs=0)


def test_session_reports_the_providers_that_run(onnx_file, tmp_path):
    sess = make_session(onnx_file, threads=1)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert choose_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(CompressorError, match="`threads` must be >= 1"):
        make_session(onnx_file, threads=0)
    with pytest.raises(CompressorError, match="unknown ONNX Runtime device"):
        make_session(onnx_file, device="tpu")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(CompressorError, match="ONNX Runtime cannot load"):
        make_session(tmp_path / "bad.onnx")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the CPU-only error path cannot be exercised")
def test_cuda_provider_missing_is_one_line():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    with pytest.raises(CompressorError, match="onnxruntime-gpu"):
        choose_providers("cuda")


@pytest.mark.slow
def test_onnxruntime_format_saves_the_optimised_graph(capsys, digits_ckpt, tmp_path):
    import json

    import onnx

    from tests.conftest import cli

    out = tmp_path / "m.ort.onnx"
    code, text, err = cli(capsys, "export", str(digits_ckpt), "--format", "onnxruntime", "-o", str(out), "--json")
    assert code == 0, err
    rep = json.loads(text)
    assert rep["max_abs_diff"] <= 1e-4 and rep["providers"] == ["CPUExecutionProvider"]
    ops = {(n.domain, n.op_type) for n in onnx.load(str(out)).graph.node}
    assert ("com.microsoft", "FusedConv") in ops  # ORT's fusions are baked in: sessions start without redoing them
