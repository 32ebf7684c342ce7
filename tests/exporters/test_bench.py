"""`compressor bench` on digits: every output written (JSON checked against its schema), engines agree with their
source, and bad input (a batch size outside an engine's range, unpaired engines, existing outputs) is one line."""

from __future__ import annotations

import copy
import csv
import json

import pytest

from exporters.bench import parse_variants
from exporters.bench_report import pareto_front
from exporters.schema import load_schema, validate
from tests.conftest import cli

FAST = ["--n", "24", "--runs", "3", "--warmup", "1", "--square-queries", "10", "--attacks", "fgsm,pgd5",
        "--batch-sizes", "1,8"]


@pytest.mark.slow
def test_bench_writes_every_output(capsys, digits_ckpt, onnx_file, aoti_package, tmp_path):
    out = tmp_path / "bench"
    code, text, err = cli(capsys, "bench", str(digits_ckpt), "--engine", str(onnx_file), "--engine",
                          str(aoti_package[0]), "--trust-program", *FAST, "--out", str(out), "--json")
    assert code == 0, err
    report = json.loads(text)
    assert validate(report, load_schema("bench")) == []
    assert json.loads((out / "bench.json").read_text()) == report
    names = [v["name"] for v in report["variants"]]
    assert names == ["tiny:pytorch", "tiny:onnx", "tiny:aoti"]
    eager, ort_v, aoti_v = report["variants"]
    assert ort_v["providers"] == ["CPUExecutionProvider"] and aoti_v["providers"] == ["aotinductor-cpu"]
    for v in report["variants"]:
        assert [lat["batch_size"] for lat in v["latency"]] == [1, 8]
        assert v["agreement_clean"] == 1.0 and v["clean_accuracy"] == eager["source"]["clean_accuracy"]
        for name, t in v["transfer"].items():  # same predictions as the source: transfer = white-box accuracy
            assert t["agreement"] == 1.0 and t["accuracy"] == pytest.approx(t["source_accuracy"])
        assert v["robust_accuracy"] <= min(v["transfer_worst_case"], v["square"]["accuracy"]) + 1e-9
        assert v["file_bytes"] > 0 and v["memory"]["rss_delta_bytes"] >= 0
    assert set(eager["transfer"]) == {"fgsm", "pgd5"}
    s = report["settings"]
    assert s["dataset"] == "digits" and s["n"] == 24 and s["threads"] == 1
    assert report["environment"]["cpu"] and "onnxruntime" in report["environment"]["versions"]
    rows = list(csv.reader((out / "bench.csv").open()))
    assert len(rows) == 1 + 3 * 2 and rows[0][0] == "name"
    md = (out / "bench.md").read_text()
    assert "| name |" in md and "tiny:aoti" in md
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_schema_rejects_a_broken_report():
    schema = load_schema("bench")
    good = {"format": "compressor.bench/1", "created": "now", "seconds": 1.0,
            "environment": {"cpu": "x", "cpu_count": 2, "platform": "p", "gpu": None,
                            "versions": {"python": "3", "torch": "2", "onnxruntime": "1"}},
            "settings": {"dataset": "digits", "split": "test", "n": 1, "eps": 0.1, "norm": "linf", "batch_sizes": [1],
                         "warmup": 0, "runs": 1, "threads": 1, "device": "cpu", "attacks": [], "square_queries": 1,
                         "seed": 0},
            "variants": []}
    assert validate(good, schema) == ["$.variants: 0 items, fewer than 1"]
    bad = copy.deepcopy(good)
    bad["settings"]["norm"] = "l3"
    bad["settings"]["batch_sizes"] = [0]
    del bad["environment"]["cpu"]
    errors = validate(bad, schema)
    assert any("norm" in e for e in errors) and any("batch_sizes[0]" in e for e in errors)
    assert any("missing 'cpu'" in e for e in errors)


def test_peak_memory_sees_a_transient_allocation():
    import torch

    from exporters.bench import PeakMemory

    with PeakMemory() as mem:
        x = torch.ones(40_000_000)  # 160 MB, freed before the end
        del x
    assert mem.report()["rss_delta_bytes"] >= 120e6


def test_pareto_front():
    assert pareto_front([(1.0, 0.5), (2.0, 0.4), (3.0, 0.7), (0.5, 0.1)]) == [3, 0, 2]


@pytest.mark.slow
def test_batch_size_outside_the_engine_range_is_one_line(capsys, digits_ckpt, aoti_package, tmp_path):
    code, _, err = cli(capsys, "bench", f"{digits_ckpt}={aoti_package[0]}", "--trust-program", *FAST[:-2],
                       "--batch-sizes", "1,64", "--out", str(tmp_path / "b"))
    assert code == 2 and "batch size 64 is outside" in err and "range 1..16" in err
    assert len(err.strip().splitlines()) == 1  # refused before any attack or timing runs


def test_bad_variants_and_existing_outputs(capsys, digits_ckpt, onnx_file, tmp_path):
    with pytest.raises(Exception, match="with several models write MODEL=ENGINE"):
        parse_variants([str(digits_ckpt), str(onnx_file)], [onnx_file])
    code, _, err = cli(capsys, "bench", f"{digits_ckpt}={tmp_path / 'missing.onnx'}", "--out", str(tmp_path / "b"))
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "bench", f"{digits_ckpt}={digits_ckpt}", "--out", str(tmp_path / "b"))
    assert code == 2 and "cannot tell the engine format" in err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bench.json").write_text("{}")
    code, _, err = cli(capsys, "bench", str(digits_ckpt), "--out", str(tmp_path / "b"))
    assert code == 2 and "already exists" in err


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (CUDA-event timing)")
def test_bench_on_cuda_records_the_gpu(capsys, digits_ckpt, tmp_path):
    code, text, err = cli(capsys, "bench", str(digits_ckpt), *FAST, "--device", "cuda", "--out", str(tmp_path / "g"),
                          "--json")
    assert code == 0, err
    report = json.loads(text)
    assert report["environment"]["gpu"] and report["variants"][0]["providers"] == ["pytorch-cuda"]
    assert "cuda_peak_bytes" in report["variants"][0]["memory"]
