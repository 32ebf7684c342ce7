"""`compressor bench`'s speed decisions: a dense model, a genuinely smaller channel-pruned one and an unstructured one
timed in interleaved rounds twice; "faster than dense" does not flip between the runs, the unstructured row carries
its note, and the CLI prints the speedup column with intervals."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from exporters.bench import Variant, run_bench
from exporters.speedup import decide, interleaved_rounds, speedup_interval
from pruners.transforms import TransformContext, apply_transforms, parse_transforms
from tests.conftest import cli


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(128, 10)).eval()


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """dense, channels:0.75 (about 1/10 of the MACs) and 90 % unstructured zeros, as pickled modules, with a
    32x32 RGB npz data set."""
    folder = tmp_path_factory.mktemp("decide")
    rng = np.random.default_rng(0)
    data = folder / "rgb.npz"
    np.savez(data, x=rng.integers(0, 256, (200, 3, 32, 32), dtype=np.uint8), y=np.arange(200) % 10)
    dense = _net()
    pruned = copy.deepcopy(dense)
    apply_transforms(pruned, parse_transforms(["channels:0.75"]), TransformContext((3, 32, 32)))
    sparse = copy.deepcopy(dense)
    with torch.no_grad():
        for m in sparse.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                w[w.abs() < w.abs().flatten().kthvalue(int(0.9 * w.numel())).values] = 0
    paths = []
    for name, model in (("dense", dense), ("channels", pruned), ("sparse", sparse)):
        paths.append(folder / f"{name}.pt")
        torch.save(model, paths[-1])
    return paths, f"npz:{data}"


def _bench(paths, dataset):
    return run_bench([Variant(p) for p in paths], batch_sizes=[8], warmup=2, runs=12, rounds=6, attacks=(), n=8,
                     square_queries=2, dataset=dataset, model_options={"trust_pickle": True})


@pytest.mark.slow
def test_faster_than_dense_does_not_flip_and_unstructured_has_its_note(variants):
    paths, dataset = variants
    decisions = []
    for _ in range(2):
        report = _bench(paths, dataset)
        rows = {v.name.split(":")[0]: v for v in report.variants}
        decisions.append({k: r.latency[0]["speedup"]["decision"] for k, r in rows.items()})
        assert rows["dense"].latency[0]["speedup"]["reference"] is True
        assert any("unstructured sparsity" in n and "runs it dense" in n for n in rows["sparse"].notes)
        assert rows["dense"].notes == [] and rows["channels"].notes == []
        sp = rows["channels"].latency[0]["speedup"]
        assert sp["low"] <= sp["speedup"] <= sp["high"] and sp["rounds"] == 6
        assert len(rows["channels"].latency[0]["round_p50"]) == 6
    assert [d["channels"] for d in decisions] == ["faster", "faster"]
    assert all(d["sparse"] != "faster" for d in decisions)  # the same as dense, or unclear: never "faster"


def test_interleaved_rounds_rotate_and_time_every_variant():
    order = []
    clock = iter(range(10_000)).__next__
    times = interleaved_rounds([lambda: order.append(0), lambda: order.append(1), lambda: order.append(2)],
                               rounds=3, runs=2, warmup=1, clock=clock)
    assert times.shape == (3, 3, 2) and (times == 1).all()
    assert order[:3] == [0, 1, 2] and order[3:9] == [0, 0, 1, 1, 2, 2] and order[9:15] == [1, 1, 2, 2, 0, 0]


def test_interval_decisions():
    ref = [10.0, 11.0, 9.5, 10.5, 10.2]
    assert decide(speedup_interval(ref, [t / 2 for t in ref])) == "faster"
    assert decide(speedup_interval(ref, [t * 2 for t in ref])) == "slower"
    noisy = speedup_interval(ref, [9.0, 12.5, 8.5, 12.0, 10.0])
    assert noisy["low"] < 1 < noisy["high"] and decide(noisy) == "unclear"
    assert decide(speedup_interval(ref, [t / 1.01 for t in ref])) == "same"  # certain, but within 5 %
    assert decide(speedup_interval([1.0], [0.5])) == "unclear"  # one round: no interval


@pytest.mark.slow
def test_cli_prints_the_speedup_column_with_intervals(variants, tmp_path, capsys):
    paths, dataset = variants
    code, out, err = cli(capsys, "bench", *map(str, paths[:2]), "--trust-pickle", "--dataset", dataset,
                         "--batch-sizes", "8", "--runs", "6", "--rounds", "3", "--warmup", "1", "--n", "8",
                         "--attacks", "", "--square-queries", "2", "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert "speedup" in out and "1.00x (reference)" in out and "x [" in out
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert report["settings"]["rounds"] == 3 and report["settings"]["reference"] == "dense:pytorch"
