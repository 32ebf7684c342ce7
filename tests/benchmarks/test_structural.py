"""benchmarks/structural.py: a tiny real run (cnn-small, channels removed) writes complete results; bad input."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.conftest import load_script


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module."""
    yield from load_script("structural")


def test_tiny_run_writes_sane_results(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "WORKLOADS", {"cnn": {"arch": "cnn-small", "transform": "channels:0.5",
                                                     "description": "cnn-small, half the channels"}})
    assert bench.main(["--workloads", "cnn", "--rounds", "1", "--warmup", "1", "--threads", "1",
                       "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("structural-cpu-*.json")
    res = json.loads(json_path.read_text())
    w = res["workloads"][0]
    dense, small = w["models"]["dense"], w["models"]["transformed"]
    assert dense["macs"] > 3.5 * small["macs"] and w["mac_ratio"] == pytest.approx(dense["macs"] / small["macs"])
    assert dense["layers"]["features.0"] == "32x3x3x3" and small["layers"]["features.0"] == "16x3x3x3"
    for batch in ("1", "64"):
        lat = w["latency"][batch]
        assert lat["dense"]["runs"] == 50 and lat["speedup"] == pytest.approx(
            lat["dense"]["p50_s"] / lat["transformed"]["p50_s"])
        assert lat["goal_met"] == (lat["speedup"] >= 0.9 * w["mac_ratio"])
    md = json_path.with_suffix(".md").read_text()
    assert "| MACs (one image) |" in md and res["command"].startswith("structural.main:")
    assert bench.main(["--workloads", "cnn", "--out", str(tmp_path)]) == 2  # never overwritten without --force


def test_bad_input_is_one_line_exit_2(bench, tmp_path, capsys):
    assert bench.main(["--runs", "10", "--out", str(tmp_path)]) == 2
    assert bench.main(["--workloads", "vgg", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --runs is 10: each median needs at least 50 runs",
                   "error: unknown or no workload vgg: choose from vgg16_bn_fc4096, resnet18"]
