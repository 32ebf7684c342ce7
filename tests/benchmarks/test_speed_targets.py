"""benchmarks/speed_targets.py on digits: adaptation, the ratio searched per speed target (or out of reach),
every importance at the same ratio, the measured speedup per row, and a report re-rendered from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import load_script


@pytest.fixture
def st():
    yield from load_script("speed_targets")


def tiny_argv(tmp_path, speedups: str, importances: str, batch_sizes: str) -> tuple[list[str], Path, Path]:
    """A digits grid small enough for a test: (argv, cache folder, results folder)."""
    from tests.conftest import untrained_digits_checkpoint

    dense = untrained_digits_checkpoint(tmp_path)
    cache, out = tmp_path / "rows", tmp_path / "out"
    argv = ["--dataset", "digits", "--val-size", "200", "--dense", str(dense), "--eps", "0.1", "--steps", "1",
            "--epochs", "1", "--adapt-epochs", "1", "--speedups", speedups, "--importances", importances,
            "--seeds", "0", "--val-n", "32", "--eval-n", "32", "--batch-sizes", batch_sizes, "--runtime", "pytorch",
            "--no-apgd-t", "--cache", str(cache), "--out", str(out)]
    return argv, cache, out


def test_rows_at_matched_macs_with_measured_speed_and_cached_report(st, tmp_path):
    argv, cache, out = tiny_argv(tmp_path, "1.2,1000", "magnitude,kappa", "1,32")
    assert st.main(argv) == 0
    (report,) = out.glob("speed_targets-*.json")
    res = json.loads(report.read_text())
    unreachable = res["targets"]["1000.0"]
    assert unreachable["ratio"] is None and "out of reach" in unreachable["error"]
    assert unreachable["limit"]["shapes"] and unreachable["limit"]["measured"]["32"]["speedup"] < 1000  # its best
    rows = {r["importance"]: r for r in res["rows"]}
    assert set(rows) == {"magnitude", "kappa"}
    assert rows["magnitude"]["ratio"] == rows["kappa"]["ratio"] == res["targets"]["1.2"]["ratio"]
    assert rows["magnitude"]["macs_fraction"] == pytest.approx(rows["kappa"]["macs_fraction"])  # matched MACs
    assert rows["magnitude"]["macs_fraction"] < 1
    assert set(rows["kappa"]["speed"]) == {"1", "32"} and rows["kappa"]["speed"]["32"]["speedup"] > 0
    assert rows["kappa"]["speed_source"] == "this row"
    assert (cache / "dense-adapted.pt").is_file() and res["dense_info"]["adapted"]["epochs"] == 1
    kappa = next(e for e in res["summary"] if e["importance"] == "kappa")
    assert "apgd_vs_magnitude" in kappa and isinstance(kappa["goal_met"], bool)
    md = report.with_suffix(".md").read_text()
    assert "| 1000x | out of reach |" in md and "## Goal" in md and "| 1.2x | kappa | 1 |" in md
    assert not res["missing"] and "No rows at 1000x: out of reach" in md  # never to be run, so not "missing"
    assert res["targets"]["1.2"]["machine"]["cpu_model"] and rows["kappa"]["speed_machine"]["cpu_count"]
    assert "Timed on: " in md and "(1.2x, 1000x, magnitude-x1.2-seed0, kappa-x1.2-seed0)" in md

    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    assert st.main([*argv, "--max-minutes", "0"]) == 0  # re-render only: no row, target or adaptation is redone
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")} == before
    assert json.loads(report.read_text())["rows"] == res["rows"]

    assert st.main([*argv, "--seeds", "1", "--no-time-rows", "--eval-channels-last"]) == 0  # same shapes: the search's
    res = json.loads(report.read_text())  # timing is reused
    (again,) = [r for r in res["rows"] if r["seed"] == 1 and r["importance"] == "magnitude"]
    assert again["speed_source"].startswith("target search") and again["speed"] == res["targets"]["1.2"]["measured"]
    assert again["eval_channels_last"] is True and rows["magnitude"]["eval_channels_last"] is False
    md = report.with_suffix(".md").read_text()
    assert "carry that timing" in md  # below: the report holds seed 1's two rows and the dense model
    assert "2 of the 3 evaluations (dense and rows) attacked channels_last" in md

    twin = json.loads((cache / "target-x1.2.json").read_text())  # a second target that lands on the same ratio
    (cache / "target-x1.25.json").write_text(json.dumps({**twin, "target": 1.25}))
    assert st.main([*argv, "--speedups", "1.2,1.25,1000", "--max-minutes", "0"]) == 0
    res = json.loads(report.read_text())
    shared = [r for r in res["rows"] if r["target"] == 1.25]
    assert len(shared) == 2 and all(r["same_rows_as"] == 1.2 for r in shared)  # reused, not run again
    assert not any(k.startswith(("magnitude-x1.25", "kappa-x1.25")) for k in res["missing"])
    assert "the architecture 1.2x chose: its rows are shared" in report.with_suffix(".md").read_text()


def test_bad_choices_are_one_line_errors(st, tmp_path, capsys):
    argv = ["--dataset", "digits", "--dense", str(tmp_path / "none.pt"), "--out", str(tmp_path)]
    assert st.main([*argv, "--importances", "magnitude,random"]) == 2
    assert "unknown 'random'" in capsys.readouterr().err
    assert st.main([*argv, "--speedups", ""]) == 2


def test_search_only_times_the_targets_first_and_leaves_adaptation_and_rows_for_later(st, tmp_path):
    argv, cache, out = tiny_argv(tmp_path, "1.2", "magnitude", "32")
    argv.append("--no-time-rows")
    assert st.main([*argv, "--search-only"]) == 0
    assert {p.stem for p in cache.glob("*.json")} == {"settings", "target-x1.2"}  # no adaptation, dense row, row
    (report,) = out.glob("speed_targets-*.json")
    res = json.loads(report.read_text())
    assert res["targets"]["1.2"]["ratio"] and not res["rows"] and res["missing"] == ["magnitude-x1.2-seed0"]
    assert "adaptation, 1 epochs, has not run yet" in report.with_suffix(".md").read_text()

    target = (cache / "target-x1.2.json").read_text()
    assert st.main(argv) == 0  # later, beside other work: adapts, evaluates and runs the row on the same target
    assert (cache / "target-x1.2.json").read_text() == target and (cache / "dense-adapted.pt").is_file()
    (row,) = json.loads(report.read_text())["rows"]
    assert row["speed_source"].startswith("target search") and row["ratio"] == res["targets"]["1.2"]["ratio"]


def test_the_same_shapes_timed_on_another_cpu_are_reported_with_the_goal_there(st, tmp_path, capsys):
    argv, cache, out = tiny_argv(tmp_path, "1.2", "magnitude", "32")
    argv.append("--no-time-rows")
    assert st.main(argv) == 0
    other = tmp_path / "other-cpu"
    other.mkdir()
    target = json.loads((cache / "target-x1.2.json").read_text())
    fast = {"speedup": 2.5, "low": 2.4, "high": 2.6}
    (other / "target-x2.json").write_text(json.dumps(
        {**target, "target": 2.0, "measured": {"32": fast}, "machine": {"cpu_model": "Other CPU", "cpu_count": 4}}))
    third = tmp_path / "third-cpu"  # where every target was out of reach: the most pruned architecture's timing
    third.mkdir()
    limit = {"ratio": target["ratio"], "shapes": target["shapes"], "measured": {"32": {**fast, "speedup": 1.1}}}
    (third / "target-x3.json").write_text(json.dumps({"target": 3, "ratio": None, "error": "out of reach",
                                                      "limit": limit, "machine": {"cpu_model": "Slow", "cpu_count": 2}}))
    elsewhere = ["--timed-elsewhere", str(other), "--timed-elsewhere", str(third), "--max-minutes", "0"]
    assert st.main([*argv, *elsewhere]) == 0
    (report,) = out.glob("speed_targets-*.json")
    res = json.loads(report.read_text())
    (entry,) = res["summary"]
    there, slow = entry["elsewhere"]
    assert there["cpu"] == "Other CPU, 4 cores" and there["speedup"]["32"]["speedup"] == 2.5
    assert there["goal_met"] == (entry["retention"] >= 0.9) and slow["cpu"] == "Slow, 2 cores" and not slow["goal_met"]
    md = report.with_suffix(".md").read_text()
    assert "## Timed on other CPUs" in md and "| 1.2x | magnitude | Other CPU, 4 cores |" in md
    assert "b32: 2.50x [2.40, 2.60]" in md and "On Other CPU, 4 cores: the goal is" in md
    assert "| 1.2x | magnitude | Slow, 2 cores |" in md and "On Slow, 2 cores: the goal is **not met**" in md

    (other / "target-x3.json").write_text(json.dumps({**target, "shapes": "conv1: 8x3x3x3"}))  # hostile: a string
    capsys.readouterr()
    assert st.main([*argv, *elsewhere]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "target-x3.json" in err and "`shapes`" in err
    assert st.main([*argv, "--timed-elsewhere", str(tmp_path / "nowhere"), "--max-minutes", "0"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_an_interrupted_adaptation_resumes_after_its_last_finished_epoch(st, tmp_path, monkeypatch):
    import sys

    from compressor.training import Trainer

    argv, cache, out = tiny_argv(tmp_path, "1.2", "magnitude", "32")
    argv[argv.index("--adapt-epochs") + 1] = "2"
    argv.append("--bf16")
    run_epoch = Trainer._run_epoch

    def stopped_in_second_epoch(self, progress):
        if self.epoch == 1:
            raise KeyboardInterrupt  # the session ends mid-epoch
        run_epoch(self, progress)

    monkeypatch.setattr(Trainer, "_run_epoch", stopped_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        st.main(argv)
    state = cache / sys.modules["speed_rows"].ADAPTING
    assert state.is_file() and not (cache / "dense-adapted.pt").exists()
    saved = torch_load(state)
    assert len(saved["history"]) == 1
    assert saved["config"]["amp"] == "bf16" and saved["config"]["channels_last"] == "on"  # --bf16

    epochs_run = []

    def counted(self, progress):
        epochs_run.append(self.epoch)
        run_epoch(self, progress)

    monkeypatch.setattr(Trainer, "_run_epoch", counted)
    assert st.main([*argv, "--max-minutes", "10"]) == 0
    assert epochs_run[0] == 1  # the adaptation went on with its second epoch (the row's fine-tuning follows)
    res = json.loads(next(out.glob("speed_targets-*.json")).read_text())
    assert res["dense_info"]["adapted"]["resumed"] and (cache / "dense-adapted.pt").is_file()
    assert not state.exists()  # replaced by the adapted weights
    assert "bf16 autocast and channels_last" in next(out.glob("speed_targets-*.md")).read_text()


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_an_interrupted_row_goes_on_from_its_last_finished_epoch(st, tmp_path, monkeypatch):
    from compressor.training import Trainer

    argv, cache, out = tiny_argv(tmp_path, "1.2", "magnitude", "32")
    argv[argv.index("--epochs") + 1] = "2"
    run_epoch = Trainer._run_epoch
    row_epochs = []

    def interrupted(self, progress):
        in_row = self.state_path is not None and self.state_path.name.startswith("magnitude-x1.2-seed0.")
        if in_row:
            row_epochs.append(self.epoch)
            if self.epoch == 1 and row_epochs.count(1) == 1:
                raise KeyboardInterrupt  # the session ends in the row's second epoch
        run_epoch(self, progress)

    monkeypatch.setattr(Trainer, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        st.main(argv)
    assert [p.name for p in cache.glob("*.state")] == ["magnitude-x1.2-seed0.finetune.state"]
    assert st.main(argv) == 0
    assert row_epochs == [0, 1, 1]  # the second run trained only the epoch that had not finished
    (row,) = json.loads(next(out.glob("speed_targets-*.json")).read_text())["rows"]
    assert row["resumed"] and len(row["phases"]) == 1 and not list(cache.glob("*.state"))
