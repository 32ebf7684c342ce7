"""benchmarks/robust_pruning.py (protocol v3): a tiny real grid on digits writes complete, labelled results with
seeds and spread, resumes from its cache, evaluates every row on the same images; bad input is one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from compressor.checkpoint import save_checkpoint
from compressor.data import load_dataset
from compressor.models import create_model
from compressor.workflows import model_kwargs
from tests.benchmarks.conftest import load_helper, load_script

TINY = ["--dataset", "digits", "--train-n", "200", "--val-n", "48", "--eval-n", "40", "--epochs-dense", "2",
        "--epochs-weights", "2", "--epochs-search", "1", "--epochs-admm", "1", "--steps", "2", "--no-apgd-t",
        "--lambdas", ""]


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module."""
    yield from load_script("robust_pruning")


@pytest.fixture(scope="module")
def stats(bench):
    """Its statistics module."""
    yield from load_helper("pruning_stats")


def test_tiny_grid_is_matched_seeded_resumable_and_labelled(bench, tmp_path, capsys):
    cache = tmp_path / "rows"
    argv = [*TINY, "--methods", "magnitude,hydra,tscnc,admm", "--sparsities", "0.9", "--seeds", "0,1",
            "--allocations", "global", "--no-admm-pgd", "--cache", str(cache), "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    out = capsys.readouterr()  # a row announces itself and prints a line per epoch while it trains
    assert "[1/8] magnitude (global) @ 0.9 seed 0: training" in out.out and "epoch 2/2" in out.err
    (js,) = tmp_path.glob("robust_pruning-digits-*.json")
    res = json.loads(js.read_text())
    rows = res["rows"]
    assert len(rows) == res["cost"]["rows_total"] == 4 * 2 and not res["cost"]["missing"]
    for r in rows:
        assert r["n"] == 40 and 0 <= r["apgd"] <= r["pgd20"] <= r["clean"] <= 1  # the same images, a worst case
        assert r["weight_epochs"] == 2 and r["sparsity"] == pytest.approx(0.9, abs=0.01)
        assert r["group"] == r["allocation"] == "global" and r["adv"] == "trades"
        assert len(r["robust_mask"]) == 40 and r["history"] and r["history"][-1]["kappa_layers"]
    assert {r["search_epochs"] for r in rows if r["method"] == "hydra"} == {1}
    assert {r["schedule"] for r in rows if r["method"] in ("magnitude", "tscnc")} == {"oneshot"}
    hydra = next(e for e in res["summary"] if e["label"] == "hydra")
    assert hydra["seeds"] == [0, 1] and hydra["pgd20"]["n"] == 2 and hydra["pgd20"]["ci95"] >= 0
    assert {(c["group"], c["sparsity"]) for c in res["comparisons"]} == {("global", 0.9)}
    assert len(res["plots"]) == 4 and all(Path(p).is_file() for p in res["plots"])
    md = js.with_suffix(".md").read_text()
    assert "protocol v3" in md and "Paired differences" in md and "matched allocation: global" in md
    (ret,) = res["retention"]  # the best method's APGD-CE+T over the dense model's
    assert ret["ratio"] == pytest.approx(ret["value"] / res["dense"]["apgd"]) and "Dense retention" in md

    # resuming runs nothing new, and rewrites the same report
    capsys.readouterr()
    assert bench.main(argv) == 0
    again = json.loads(js.read_text())
    assert again["cost"]["rows_run_now"] == 0 and len(again["rows"]) == len(rows)
    assert "training" not in capsys.readouterr().out
    # a cache made with other settings is refused in one line, before anything runs
    assert bench.main([*argv[:-4], "--epochs-weights", "3", "--cache", str(cache), "--out", str(tmp_path)]) == 2
    assert "other settings (epochs_weights)" in capsys.readouterr().err


def test_per_layer_own_defaults_admm_pgd_and_lambda_rows_are_labelled(bench, tmp_path):
    argv = [*TINY, "--methods", "admm,tscnc", "--sparsities", "0.9", "--seeds", "0", "--allocations", "layer,own",
            "--lambdas", "0,1e-3", "--lambdas-weight", "1e-6", "--epochs-weights", "3", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    got = {(r["group"], r["label"], r["allocation"], r["schedule"], r["adv"], r["weight_epochs"]) for r in res["rows"]}
    assert got == {("layer", "admm", "layer", "oneshot", "trades", 3), ("layer", "tscnc", "layer", "oneshot", "trades", 3),
                   ("layer", "admm (PGD-AT)", "layer", "oneshot", "pgd", 3),
                   ("lambda", "tscnc lambda=0", "layer", "oneshot", "trades", 3),
                   ("lambda", "tscnc lcc=weight lambda=1e-06", "layer", "oneshot", "trades", 3),
                   ("own", "admm", "layer", "oneshot", "trades", 3), ("own", "admm (PGD-AT)", "layer", "oneshot", "pgd", 3),
                   ("own", "tscnc", "global", "iterative", "trades", 3)}
    lam = {e["label"] for e in res["summary"] if e["group"] == "lambda"}
    assert lam == {"tscnc lambda=0", "tscnc lambda=0.001", "tscnc lcc=weight lambda=1e-06"}  # default: matched row
    assert {(c["lcc"], c["sparsity"]) for c in res["lambda_choice"]} == {("layer", 0.9), ("weight", 0.9)}
    assert all(c["candidates"][0]["lambda"] == 0 for c in res["lambda_choice"])  # no L_CC: a candidate of both
    shrink = {r["label"]: r["lcc_shrink"] for r in res["rows"] if r["method"] == "tscnc"}
    assert all(v > 0 for v in shrink["tscnc lcc=weight lambda=1e-06"].values())
    assert all(v == 0 for v in shrink["tscnc lambda=0"].values())
    md = js.with_suffix(".md").read_text()
    assert "| admm (PGD-AT) |" in md and "matched allocation: per layer" in md and "lambda chosen on validation" in md
    assert "Cumulative shrink caused by L_CC" in md


def test_grid_runs_sparsity_major_with_the_matched_schedule(bench):
    args = bench.build_parser().parse_args([*TINY, "--methods", "magnitude,tscnc,hydra", "--sparsities", "0.95,0.9",
                                            "--seeds", "0,1", "--allocations", "layer", "--lambdas", "0,1e-3",
                                            "--schedule-options", "schedule=iterative,rounds=2",
                                            "--epochs-schedule", "1"])
    grid = bench.build_grid(args)
    sparsities = [r.sparsity for r in grid]
    assert sparsities == sorted(sparsities, key=lambda s: s != 0.95)  # every 95 % row before any 90 % one
    by = {(r.method, r.group): r for r in grid if r.sparsity == 0.9 and r.seed == 0}
    for method in ("magnitude", "tscnc"):  # the same moving schedule, one prune epoch within the weight budget
        r = by[(method, "layer")]
        assert dict(r.options)["schedule"] == "iterative" and (r.epochs_prune, r.epochs_finetune) == (1, 1)
    assert "schedule" not in dict(by[("hydra", "layer")].options)  # HYDRA's prune phase is its score search


def test_processes_share_a_cache_through_claims(bench, tmp_path):
    import os
    import subprocess

    cache = bench.RowCache(tmp_path / "rows", {"a": 1}, "now")
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "rows" / "busy.claim").write_text(str(other.pid))  # a live process runs this row
        assert not cache.claim("busy")
    finally:
        other.kill()
        other.wait()
    assert cache.claim("busy")  # its process died: taken over
    assert cache.claim("busy") and (tmp_path / "rows" / "busy.claim").read_text() == str(os.getpid())
    cache.put("busy", {"x": 1})
    assert not (tmp_path / "rows" / "busy.claim").exists() and cache.get("busy") == {"x": 1}


def test_max_minutes_leaves_rows_for_the_next_chunk(bench, tmp_path):
    argv = [*TINY, "--methods", "magnitude", "--sparsities", "0.9,0.95", "--seeds", "0", "--allocations", "global",
            "--cache", str(tmp_path / "rows"), "--max-minutes", "0", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    assert res["cost"]["rows_done"] == 0 and len(res["cost"]["missing"]) == 2
    assert "Not run yet (2 rows" in js.with_suffix(".md").read_text()


def test_apgd_t_runs_on_the_survivors_of_the_same_images(bench):
    args = bench.build_parser().parse_args(["--dataset", "digits", "--eval-n", "12", "--val-n", "8"])
    args.eps_value = 0.1
    data = load_dataset("digits")
    model = create_model("cnn-small", **model_kwargs(data.info, width=8, hidden=16)).eval()
    lines = []
    out = bench.robust_eval(model, data, args, lines.append)
    assert out["apgd_attacks"] == "pgd20+apgd-ce+apgd-t" and out["n"] == 12
    assert lines[0] == "evaluating: clean, PGD-20 and APGD-CE on 12 images"  # each stage says when it starts and ends
    assert lines[1].startswith(f"evaluated: PGD-20 {out['pgd20']:.3f}")
    assert len(lines) == (3 if "apgd-t" in out["attack_seconds"] else 2)
    assert out["eval_channels_last"] is False
    args.eval_channels_last = True  # --eval-channels-last: the same images' outcomes, up to float rounding
    fast = bench.robust_eval(model, data, args)
    assert fast["eval_channels_last"] is True and fast["clean"] == out["clean"]
    assert abs(fast["apgd"] - out["apgd"]) <= 2 / 12 and all(p.is_contiguous() for p in model.parameters())
    assert out["apgd"] <= min(out["pgd20"], out["apgd_ce"])
    assert out["apgd"] == pytest.approx(out["robust_mask"].count("1") / 12)


def test_statistics(stats):
    from scipy.stats import t

    s = stats.summarise([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
    assert s["ci95"] == pytest.approx(t.ppf(0.975, 2) * 0.1 / 3 ** 0.5)


def test_lambda_is_chosen_per_reading_against_no_lcc(stats):
    def row(group, lam, lcc, seed, val, apgd):
        return {"group": group, "method": "tscnc", "adv": "trades", "sparsity_target": 0.95, "seed": seed,
                "label": f"tscnc {lcc} {lam:g}", "options": {"lam": lam}, "config": {"lam": lam, "lcc": lcc},
                "val_pgd20": val, "pgd20": apgd + 0.02, "apgd": apgd}

    rows = [row("layer", 1e-3, "layer", s, 0.40, 0.40 + 0.01 * s) for s in range(3)]  # the matched (default) rows
    rows += [row("lambda", 0.0, "layer", s, 0.41, 0.41 + 0.01 * s) for s in range(3)]
    rows += [row("lambda", 1e-2, "layer", s, 0.39, 0.30) for s in range(3)]
    rows += [row("lambda", 1e-5, "weight", s, 0.43, 0.42 + 0.01 * s + 0.001 * s * s) for s in range(3)]
    layer, weight = sorted(stats.lambda_choice(rows, "layer"), key=lambda c: c["lcc"])
    # no L_CC wins the layer-wise reading on validation, and is a candidate of the per-weight reading too
    assert layer["lambda"] == 0 and "vs_off" not in layer
    assert [c["lambda"] for c in layer["candidates"]] == [0, 1e-3, 1e-2]
    assert weight["lambda"] == 1e-5 and [c["lambda"] for c in weight["candidates"]] == [0, 1e-5]
    diff = weight["vs_off"]  # held-out, paired by seed: 0.01, 0.011, 0.014
    assert diff["seeds"] == [0, 1, 2] and diff["apgd"]["mean"] == pytest.approx(0.035 / 3)
    assert diff["apgd"]["ci95"] > 0 and diff["pgd20"]["mean"] == pytest.approx(diff["apgd"]["mean"])
    per_lambda = {c["lambda"]: c.get("vs_off") for c in layer["candidates"]}  # every lambda against no L_CC
    assert per_lambda[0] is None and per_lambda[1e-2]["apgd"]["mean"] == pytest.approx(0.30 - 0.42)


def test_starts_from_a_given_dense_checkpoint(bench, tmp_path):
    info = load_dataset("digits").info
    kwargs = model_kwargs(info, width=8, hidden=16)
    save_checkpoint(tmp_path / "dense.pt", create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=info.as_dict())
    out = tmp_path / "out"
    assert bench.main([*TINY, "--dense", str(tmp_path / "dense.pt"), "--methods", "magnitude", "--sparsities", "0.5",
                       "--seeds", "0", "--allocations", "global", "--out", str(out)]) == 0
    (js,) = out.glob("*.json")
    res = json.loads(js.read_text())
    assert res["dense_train"]["source"].endswith("dense.pt") and res["dense_train"]["epochs"] == 0
    assert "loaded from" in js.with_suffix(".md").read_text()


def test_unknown_method_fails_before_training(bench, tmp_path, capsys):
    assert bench.main(["--methods", "magnitud", "--out", str(tmp_path)]) == 2
    assert "did you mean 'magnitude'" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_bad_grid_input_is_one_line(bench, tmp_path, capsys):
    assert bench.main(["--allocations", "glob", "--out", str(tmp_path)]) == 2
    assert "unknown allocation 'glob'" in capsys.readouterr().err
    assert bench.main(["--eps", "two", "--out", str(tmp_path)]) == 2
    assert "--eps 'two' is not a number" in capsys.readouterr().err
    assert isinstance(bench.build_parser().parse_args([]), argparse.Namespace)


def test_autoattack_is_added_later_to_cached_rows_on_the_same_images(bench, tmp_path):
    base = [*TINY, "--methods", "magnitude", "--sparsities", "0.9", "--seeds", "0", "--allocations", "global",
            "--eval-n", "8", "--cache", str(tmp_path / "rows"), "--save-models", str(tmp_path / "models"),
            "--out", str(tmp_path)]
    assert bench.main(base) == 0
    assert bench.main([*base, "--only-cached", "--aa-rows", "global"]) == 0
    (js,) = tmp_path.glob("*.json")
    res = json.loads(js.read_text())
    (row,) = res["rows"]
    assert res["cost"]["rows_run_now"] == 0 and row["n"] == 8
    assert 0 <= row["worst"] <= min(row["aa"], row["apgd"]) and "APGD-CE+T | AA |" in js.with_suffix(".md").read_text()


# the Protocol v3 command of benchmarks/README.md (its long grid resumes from a cache named by these keys)
V3 = ["--dataset", "npz:../shared/data/cifar10_train.npz,../shared/data/cifar10_test.npz", "--val-size", "5000",
      "--dense", "../shared/checkpoints/abcrown_resnet4b_adv2px.pth", "--arch", "benchmarks.models.abcrown:resnet4b",
      "--mean", "0.4914,0.4822,0.4465", "--std", "0.2471,0.2435,0.2616", "--eps", "2/255", "--steps", "5",
      "--batch-size", "128", "--lr", "0.01", "--val-n", "1000", "--eval-n", "1000", "--epochs-weights", "8",
      "--epochs-search", "10", "--epochs-admm", "4", "--allocations", "layer", "--no-admm-pgd",
      "--methods", "magnitude,hydra,tscnc,admm", "--sparsities", "0.95,0.9,0.99", "--seeds", "0,1,2",
      "--schedule-options", "schedule=cubic,update_every=50", "--epochs-schedule", "1", "--lambdas", "0,1e-2",
      "--lambdas-weight", "1e-6,1e-5", "--lambda-sparsities", "0.95", "--variants", "tscnc:schedule=oneshot",
      "--variant-sparsities", "0.95", "--aa-rows", "dense,layer@0.95"]


def test_cache_keys_and_settings_are_pinned(bench):
    """An edit that renamed a row or a cached setting would orphan every finished row of a running grid."""
    args = bench.build_parser().parse_args(V3)
    grid = bench.build_grid(args)
    keys = [r.key for r in grid]
    assert len(grid) == 51 and len(set(keys)) == 51
    assert keys[:4] == ["layer-magnitude-allocation=layer,schedule=cubic,update_every=50-trades-1+7-s0.95-seed0",
                        "layer-hydra-allocation=layer-trades-10+8-s0.95-seed0",
                        "layer-tscnc-allocation=layer,schedule=cubic,update_every=50-trades-1+7-s0.95-seed0",
                        "layer-admm-allocation=layer-trades-4+4-s0.95-seed0"]
    assert keys[12] == "lambda-tscnc-allocation=layer,lam=0.0,schedule=cubic,update_every=50-trades-1+7-s0.95-seed0"
    assert keys[18] == ("lambda-tscnc-allocation=layer,lam=1e-06,lcc=weight,schedule=cubic,update_every=50-trades-1+7"
                        "-s0.95-seed0")
    assert keys[24] == "variant-tscnc-allocation=layer,schedule=oneshot,update_every=50-trades-0+8-s0.95-seed0"
    assert keys[-1] == "layer-admm-allocation=layer-trades-4+4-s0.99-seed2"
    assert [r.key for r in grid if r.aa] == keys[:4]  # AutoAttack on the first seed at 95 %
    assert bench.row_settings(args) == {
        "dataset": "npz:../shared/data/cifar10_train.npz,../shared/data/cifar10_test.npz", "val_size": 5000,
        "schedule_options": "schedule=cubic,update_every=50", "epochs_schedule": 1,
        "dense": "../shared/checkpoints/abcrown_resnet4b_adv2px.pth", "arch": "benchmarks.models.abcrown:resnet4b",
        "mean": "0.4914,0.4822,0.4465", "std": "0.2471,0.2435,0.2616", "no_normalize": False, "eps": "2/255",
        "train_n": None, "val_n": 1000, "eval_n": 1000, "data_seed": 0, "epochs_dense": 15, "epochs_weights": 8,
        "epochs_search": 10, "epochs_admm": 4, "lr": 0.01, "lr_search": 0.1, "weight_decay": 0.0001,
        "batch_size": 128, "steps": 5, "width": 32, "hidden": 128, "seed": 0, "apgd_t": True}
