"""benchmarks/robust_pruning.py: a tiny real run on digits writes complete results; bad input is one line."""

from __future__ import annotations

import json

import pytest

from compressor.checkpoint import save_checkpoint
from compressor.data import load_dataset
from compressor.models import create_model
from compressor.workflows import model_kwargs
from tests.benchmarks.conftest import load_script

TINY = ["--dataset", "digits", "--train-n", "200", "--val-n", "64", "--eval-n", "60", "--epochs-dense", "1",
        "--epochs-prune", "2", "--epochs-finetune", "1", "--steps", "2", "--aa-n", "0", "--overhead-steps", "2"]


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module."""
    yield from load_script("robust_pruning")


def test_tiny_digits_run_writes_json_and_markdown(bench, tmp_path):
    code = bench.main([*TINY, "--methods", "magnitude,tscnc", "--sparsities", "0.9", "--out", str(tmp_path)])
    assert code == 0
    (js,) = tmp_path.glob("robust_pruning-digits-*.json")
    res = json.loads(js.read_text())
    assert res["command"].startswith("robust_pruning.main: ") and res["machine"]["cpu_model"]
    assert [(r["method"], r["sparsity_target"]) for r in res["rows"]] == [("magnitude", 0.9), ("tscnc", 0.9)]
    for row in res["rows"]:
        assert 0 <= row["pgd20"] <= row["clean"] <= 1
        assert row["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert {(o["method"], o["phase"]) for o in res["overhead"]} == {(m, p) for m in ("magnitude", "tscnc")
                                                                     for p in ("prune", "finetune")}
    assert all(o["step_ratio"] > 0 for o in res["overhead"])
    md = js.with_suffix(".md").read_text()
    assert md.startswith("# Robust pruning on digits") and "| tscnc |" in md
    assert bench.main([*TINY, "--methods", "magnitude", "--sparsities", "0.9", "--out", str(tmp_path)]) == 2


def test_starts_from_a_given_dense_checkpoint(bench, tmp_path):
    info = load_dataset("digits").info
    kwargs = model_kwargs(info, width=8, hidden=16)
    save_checkpoint(tmp_path / "dense.pt", create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=info.as_dict())
    out = tmp_path / "out"
    assert bench.main([*TINY, "--dense", str(tmp_path / "dense.pt"), "--methods", "magnitude", "--sparsities", "0.5",
                       "--overhead-steps", "0", "--out", str(out)]) == 0
    (js,) = out.glob("*.json")
    res = json.loads(js.read_text())
    assert res["dense_train"]["source"].endswith("dense.pt") and res["dense_train"]["epochs"] == 0
    assert "loaded from" in js.with_suffix(".md").read_text()


def test_unknown_method_fails_before_training(bench, tmp_path, capsys):
    assert bench.main(["--methods", "magnitud", "--out", str(tmp_path)]) == 2
    assert "did you mean 'magnitude'" in capsys.readouterr().err and not list(tmp_path.iterdir())
