"""benchmarks/train_throughput.py: a tiny real run on digits writes complete, sane results."""

from __future__ import annotations

import json

import pytest
import torch

from tests.benchmarks.conftest import load_script



@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module."""
    yield from load_script("train_throughput")


def test_digits_run_writes_json_and_markdown(bench, tmp_path, capsys):
    # one thread: the test may share the CPU with other workers, and oversubscribed threads make step times erratic
    args = ["--device", "cpu", "--workloads", "digits", "--warmup", "1", "--steps", "3", "--threads", "1",
            "--out", str(tmp_path)]
    assert bench.main(args) == 0
    (json_path,) = tmp_path.glob("train_throughput-cpu-*.json")
    md_path = json_path.with_suffix(".md")
    assert md_path.is_file()

    res = json.loads(json_path.read_text())
    for key in ("date", "started_utc", "command", "machine", "versions", "load_average_start", "load_average_end",
                "device", "workloads"):
        assert key in res, key
    assert res["device"] == "cpu" and res["machine"]["cpu_count"] >= 1 and res["machine"]["torch_threads"] == 1
    assert res["machine"]["cpu_model"]
    assert "torch" in res["versions"] and len(res["load_average_start"]) == 3
    assert "--workloads digits" in res["command"]

    (w,) = res["workloads"]
    assert w["name"] == "digits" and w["model"] == "cnn-small" and w["batch_size"] == 128
    assert w["warmup_steps"] == 1 and w["timed_steps"] == 3
    rows = {r["mode"]: r for r in w["modes"]}
    assert set(rows) == {"standard", "pgd10", "trades10"}
    for r in rows.values():
        assert len(r["times_s"]) == 3
        assert 0 < r["median_s_per_step"] <= r["p90_s_per_step"]
        assert r["images_per_s"] == pytest.approx(128 / r["median_s_per_step"])
        assert r["last_loss"] == r["last_loss"]  # finite training, not NaN
    assert rows["standard"]["ratio_to_standard"] == 1.0
    assert rows["pgd10"]["reference_passes"] == 11 and rows["trades10"]["reference_passes"] == 12
    # ten attack iterations on top of the update: an adversarial step must cost more than a standard one
    assert w["ratios"]["pgd10"] > 1 and w["ratios"]["trades10"] > 1
    assert w["ratios"]["pgd10"] == rows["pgd10"]["ratio_to_standard"]

    md = md_path.read_text()
    assert "| pgd10 | 128 |" in md and res["machine"]["cpu_model"] in md and "ratio to standard" in md

    # an existing result is kept unless --force (refused before any measuring)
    capsys.readouterr()
    assert bench.main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_unknown_workload_is_a_clear_error(bench, tmp_path, capsys):
    assert bench.main(["--device", "cpu", "--workloads", "mnist", "--out", str(tmp_path)]) == 2
    assert "unknown workload" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["resnet4b", "resnet20"])
def test_benchmark_model_workloads_build_the_benchmarks_models(bench, name):
    spec = bench.WORKLOADS[name]
    info = spec["data"](2).info
    model = bench.build_workload_model(spec, info)
    assert any(type(m).__module__ == spec["model"].split(":")[0] for m in model.modules())
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert spec["cpu"][0] == 128  # the batch the robust-pruning and speed-target grids train with


def test_precisions_time_each_workload_in_fp32_and_bf16_with_the_ratio(bench, tmp_path):
    args = ["--device", "cpu", "--workloads", "digits", "--warmup", "0", "--steps", "1", "--threads", "1",
            "--precisions", "fp32,bf16", "--out", str(tmp_path)]
    assert bench.main(args) == 0
    (json_path,) = tmp_path.glob("train_throughput-cpu-*.json")
    res = json.loads(json_path.read_text())
    fp32, bf16 = res["workloads"]
    assert (fp32["precision"], fp32["amp_bf16"], fp32["channels_last"]) == ("fp32", False, False)
    assert (bf16["precision"], bf16["amp_bf16"], bf16["channels_last"]) == ("bf16", True, True)
    ratio = res["precision_ratios"]["digits"]["trades10"]
    assert ratio == pytest.approx(fp32["modes"][2]["median_s_per_step"] / bf16["modes"][2]["median_s_per_step"])
    assert "bf16 speedup over fp32 on digits" in json_path.with_suffix(".md").read_text()
    assert bench.main([*args[:-2], "--precisions", "fp16", "--out", str(tmp_path / "x")]) == 2
