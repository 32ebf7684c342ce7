"""benchmarks/gpu_check.py --dry-run: every part runs on the CPU in its own guarded process and lands in JSON + Markdown;
the CUDA-test selection, the JUnit parsing and the CIFAR slice split are checked on their own."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmarks.conftest import BENCHMARKS, load_helper, load_script

REPO = BENCHMARKS.parent


@pytest.fixture(scope="module")
def gc():
    yield from load_script("gpu_check")


@pytest.fixture(scope="module")
def parts(gc):
    """Its measuring parts."""
    yield from load_helper("gpu_check_parts")


@pytest.mark.slow
def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["dry_run"] and res["format"] == "compressor.benchmark.gpu_check" and res["versions"]["torch"]
    parts = res["parts"]
    assert list(parts) == ["tests", "train", "attack", "deploy", "prune"]
    assert all(p["status"] == "ok" and p["seconds"] < p["budget_seconds"] for p in parts.values()), parts

    tests = parts["tests"]["result"]["junit"]
    assert tests["tests"] and tests["counts"]["failed"] == tests["counts"]["error"] == 0
    assert all(t["outcome"] == "skipped" and "cuda" in t["message"].lower() for t in tests["tests"])  # no GPU here
    assert any("test_cuda" in t["test"] for t in tests["tests"])

    train = parts["train"]["result"]
    for variant in ("fp32-eager", "bf16-channels_last", "bf16-channels_last-compile"):
        assert [m["mode"] for m in train[variant]["modes"]] == ["standard", "pgd10", "trades10"], train[variant]
        assert all(m["images_per_s"] > 0 for m in train[variant]["modes"])
    assert train["bf16-channels_last-compile"]["compile_backend"] == "eager"
    assert set(train["speedup_vs_fp32_eager"]) == {"bf16-channels_last", "bf16-channels_last-compile"}

    attack = parts["attack"]["result"]
    pgd = attack["pgd20_throughput"]["implementations"]
    eps = attack["settings"]["eps"]
    assert set(pgd) == {"ours", "reference loop"} and all(v["max_linf"] <= eps + 1e-6 for v in pgd.values())

    deploy = parts["deploy"]["result"]
    for key in ("dense", "channels-50"):
        for b in (1, 8):
            lat = deploy[f"latency:{key}:eager:b{b}"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert "skipped" in deploy[f"aoti:{key}"]
    assert deploy["model:channels-50"]["macs"] < deploy["model:dense"]["macs"]
    ss = deploy["semi_structured"]
    assert "no CUDA GPU" in ss["unsupported"]
    assert ss["workloads"]["vgg16_bn_fc4096 classifier"]["layers_2to4"]  # the wide layers were found and masked

    prune = parts["prune"]["result"]
    if "skipped" not in prune:  # needs the CIFAR-10 slice (.gpu-carry) or ../shared
        assert prune["dense"]["n"] == len(range(64)) and {"prune:magnitude", "prune:tscnc"} <= set(prune)
        assert prune["prune:tscnc"]["weight_sparsity"] == pytest.approx(0.9, abs=0.02)
        assert attack["pgd20_strength"]["ours"] <= attack["pgd20_strength"]["clean"]
        assert "images_per_s" in attack["autoattack"]

    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check (cpu") and "DRY RUN" in md
    for title in ("1. CUDA tests", "2. Training throughput", "3. Attack throughput", "4. Deployment latency",
                  "5. Robust pruning"):
        assert f"## {title}" in md
    assert "| fp32-eager | standard |" in md and "| dense | eager | 1 |" in md
    assert (out / "gpu_check.log").read_text() and (out / "gpu_check-tests.xml").is_file()
    # an existing result is kept unless --force
    again = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--dry-run", "--out", str(out),
                            "--parts", "tests"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_failing_part_keeps_the_others(gc, tmp_path):
    bad = tmp_path / "slice.npz"
    bad.write_bytes(b"not an npz")
    out = tmp_path / "out"
    code = gc.main(["--out", str(out), "--device", "cpu", "--parts", "tests,deploy,prune", "--data", str(bad),
                    "--budgets", "deploy=0.5"])
    res = json.loads((out / "gpu_check.json").read_text())
    parts = res["parts"]
    assert code == 1 and parts["tests"]["status"] == "ok" and parts["tests"]["result"]["junit"]["tests"]
    assert parts["deploy"]["status"] == "skipped" and "budget" in parts["deploy"]["reason"]
    assert parts["prune"]["status"] == "failed" and "not a readable .npz" in parts["prune"]["error"]
    md = (out / "gpu_check.md").read_text()
    assert "| prune | failed |" in md and "| tests | ok |" in md


def test_junit_parsing(parts, tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="t.a" name="ok" time="0.5"/>'
                   '<testcase classname="t.a" name="bad" time="1"><failure message="assert 1 == 2">x</failure></testcase>'
                   '<testcase classname="t.b" name="skip" time="0"><skipped message="needs a CUDA GPU"/></testcase>'
                   '</testsuite></testsuites>')
    res = parts.parse_junit(xml)
    assert res["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert res["tests"][1] == {"test": "t.a::bad", "outcome": "failed", "seconds": 1.0, "message": "assert 1 == 2"}


def test_slice_is_disjoint_and_in_official_order(gc, tmp_path):
    src = tmp_path / "src.npz"
    x = np.arange(20 * 3 * 2 * 2, dtype=np.uint8).reshape(20, 3, 2, 2)
    np.savez(src, x=x, y=np.arange(20) % 10)
    info = gc.make_slice(src, tmp_path / "s.npz", (0, 8), (12, 20))
    with np.load(tmp_path / "s.npz") as d:
        assert (d["x_train"] == x[:8]).all() and (d["x_test"] == x[12:]).all() and len(d["y_test"]) == 8
    assert info["train_indices"] == [0, 8] and info["test_indices"] == [12, 20]
    with pytest.raises(ValueError, match="overlap"):
        gc.make_slice(src, tmp_path / "bad.npz", (0, 10), (5, 20))
