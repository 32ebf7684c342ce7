"""benchmarks/learning_curve.py: the weight-epoch budget chosen from validation only, resumable across processes."""

from __future__ import annotations

import json

import pytest

from compressor.checkpoint import save_checkpoint
from compressor.data import load_dataset
from compressor.models import create_model
from compressor.workflows import model_kwargs
from tests.benchmarks.conftest import load_script


@pytest.fixture(scope="module")
def curve():
    yield from load_script("learning_curve")


def test_choose_budget(curve):
    assert curve.choose_budget({1: 0.20, 2: 0.25, 4: 0.27, 8: 0.275}, 0.01) == (4, True)
    assert curve.choose_budget({1: 0.20, 2: 0.25, 4: 0.30}, 0.01) == (4, False)  # never flattened: the largest
    assert curve.choose_budget({1: 0.30, 2: 0.29}, 0.01) == (1, True)  # a loss from doubling is flat too


def test_budgets_share_a_cache_and_never_touch_the_test_split(curve, tmp_path, monkeypatch):
    info = load_dataset("digits").info
    kwargs = model_kwargs(info, width=8, hidden=16)
    save_checkpoint(tmp_path / "dense.pt", create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=info.as_dict())
    base = ["--dataset", "digits", "--dense", str(tmp_path / "dense.pt"), "--val-n", "40", "--steps", "2",
            "--sparsity", "0.5", "--cache", str(tmp_path / "rows"), "--out", str(tmp_path)]
    bench = curve.pr  # where robust_eval lives: run_row looks it up there
    monkeypatch.setattr(bench, "robust_eval", lambda *a, **k: pytest.fail("the held-out split was evaluated"))
    assert curve.main([*base, "--budgets", "2"]) == 0  # one process runs 2 epochs, another 1, then the report
    assert curve.main([*base, "--budgets", "1"]) == 0
    assert curve.main([*base, "--budgets", "1,2,4", "--only-cached"]) == 0
    (js,) = tmp_path.glob("learning_curve-digits-*.json")
    res = json.loads(js.read_text())
    assert sorted(int(b) for b in res["curve"]) == [1, 2] and res["missing"] == [4]
    assert [r["weight_epochs"] for r in res["rows"]] == [1, 2] and all("pgd20" not in r for r in res["rows"])
    assert res["choice"]["budget"] in (1, 2)
    md = js.with_suffix(".md").read_text()
    assert "Chosen budget" in md and "Budgets not run yet: 4" in md
