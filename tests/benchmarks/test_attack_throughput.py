"""benchmarks/attack_throughput.py: a tiny real run on digits writes complete, sane results."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.benchmarks.conftest import load_script


# A stand-in for torchattacks (never a project dependency): the same PGD, enough to exercise the comparison.
STUB = '''
import torch
import torch.nn.functional as F

__version__ = "stub"


class PGD:
    def __init__(self, model, eps, alpha, steps, random_start=True):
        self.model, self.eps, self.alpha, self.steps = model, eps, alpha, steps

    def __call__(self, x, y):
        adv = (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(self.model(adv), y), adv)
            adv = (x + (adv.detach() + self.alpha * g.sign() - x).clamp(-self.eps, self.eps)).clamp(0, 1)
        return adv
'''


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module."""
    yield from load_script("attack_throughput")


@pytest.fixture
def stub_torchattacks(tmp_path, monkeypatch):
    folder = tmp_path / "ta"
    (folder / "torchattacks").mkdir(parents=True)
    (folder / "torchattacks" / "__init__.py").write_text(STUB)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script's sys.path insert is undone afterwards
    yield folder
    sys.modules.pop("torchattacks", None)


def test_tiny_digits_run_writes_json_and_markdown(bench, stub_torchattacks, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--device", "cpu", "--workloads", "digits", "--batch", "16", "--warmup", "0", "--reps", "2",
            "--aa-n", "4", "--aa-reps", "1", "--eps", "0.5", "--train-epochs", "1", "--threads", "1",
            "--torchattacks", str(stub_torchattacks), "--out", str(out)]
    assert bench.main(args) == 0
    (json_path,) = out.glob("attack_throughput-cpu-*.json")
    md = json_path.with_suffix(".md").read_text()
    res = json.loads(json_path.read_text())
    for key in ("date", "command", "machine", "versions", "load_average_start", "load_average_end", "busy_at_start"):
        assert key in res, key
    assert res["machine"]["cpu_model"] and res["machine"]["torch_threads"] == 1
    assert res["versions"]["pyautoattack"] == "0.2.0" and res["versions"]["torchattacks (reference)"] == "stub"
    assert "--aa-n 4" in res["command"]

    (w,) = res["workloads"]
    p = w["pgd"]
    assert (p["batch_size"], p["steps"], p["eps"], p["timed_rounds"]) == (16, 10, 0.5, 2)
    assert set(p["implementations"]) == {"ours", "ours, channels_last", "torchattacks", "model floor"}
    for r in p["implementations"].values():
        assert len(r["times_s"]) == 2 and 0 < r["median_s"] <= r["p90_s"]
        assert r["images_per_s"] == pytest.approx(16 / r["median_s"])
    assert p["implementations"]["ours"]["max_linf"] <= 0.5 + 1e-6
    theirs, ours = (p["implementations"][k]["times_s"] for k in ("torchattacks", "ours"))
    assert p["speedup_vs_torchattacks"] == pytest.approx(float(np.median(np.divide(theirs, ours))))
    assert 0 < p["model_share_of_ours"]
    cl = p["implementations"]["ours, channels_last"]["times_s"]
    assert p["channels_last_speedup"] == pytest.approx(float(np.median(np.divide(ours, cl))))

    a = w["autoattack"]
    assert a["n"] == 4 and a["identical_outputs"] is True
    assert set(a["implementations"]) == {"ours", "pyautoattack direct"}
    ours, direct = (a["implementations"][k]["times_s"] for k in ("ours", "pyautoattack direct"))
    assert a["wrapper_overhead"] == pytest.approx(ours[0] / direct[0] - 1)
    assert a["protocol"]["attacks"]["square"]["queries"] == 5000

    assert "| ours |" in md and "| ours, channels_last |" in md and "Wrapper overhead" in md and res["machine"]["cpu_model"] in md
    capsys.readouterr()
    assert bench.main(args) == 2  # an existing result is kept unless --force
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--workloads", "mnist"], "unknown workload"),
    (["--torchattacks", "/nonexistent/ta"], "is not a folder"),
    (["--reps", "0", "--no-reference"], "--reps must be at least 1"),
])
def test_bad_options_are_clear_errors(bench, tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert bench.main(["--device", "cpu", *args, "--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
