"""benchmarks/deploy.py: a tiny real run of part of the suite on digits writes every output."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.conftest import load_script

TINY = ["--epochs-dense", "1", "--epochs-prune", "1", "--epochs-finetune", "1", "--steps", "2", "--runs", "3",
        "--warmup", "1", "--n", "30", "--square-queries", "10", "--batch-sizes", "1,8"]


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module."""
    yield from load_script("deploy")


def test_suite_covers_the_issue_and_a_tiny_run_writes_everything(bench, tmp_path):
    names = {s[0] for s in bench.SUITE}
    assert {"dense", "magnitude-95", "hydra-99", "tscnc-90", "separable-linear", "channels-50", "magnitude-2of4"} <= names
    assert bench.main([*TINY, "--only", "dense,magnitude-2of4", "--out", str(tmp_path)]) == 0
    (out,) = tmp_path.iterdir()
    assert {p.name for p in out.iterdir()} == {"bench.json", "bench.csv", "bench.md", "bench.png", "suite.json"}
    rep = json.loads((out / "bench.json").read_text())
    assert [v["name"] for v in rep["variants"]] == ["dense:pytorch", "dense:onnx", "magnitude-2of4:pytorch",
                                                    "magnitude-2of4:onnx"]
    suite = json.loads((out / "suite.json").read_text())
    assert suite["suite"][1]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert suite["suite"][1]["onnx"]["max_abs_diff"] < 1e-4
    assert (out / "bench.md").read_text().startswith("# Deployment suite on digits")
    assert bench.main([*TINY, "--only", "dense", "--out", str(tmp_path)]) == 2  # outputs exist: needs --force


def test_unknown_variant_is_one_line(bench, tmp_path, capsys):
    assert bench.main(["--only", "tscnc-97", "--out", str(tmp_path)]) == 2
    assert "unknown variant 'tscnc-97'" in capsys.readouterr().err and not list(tmp_path.iterdir())
