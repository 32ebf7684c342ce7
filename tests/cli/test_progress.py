"""Progress on long work: bars on stderr when forced or on a terminal, none under --quiet / --json or in a pipe;
`compressor --help` without torch; `inspect` of a plain state dict with its classes and MACs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compressor import progress
from compressor.checkpoint import load_model
from compressor.models import create_model
from compressor.progress import FORCE_ENV, bar
from compressor.training import TrainConfig, Trainer

from ..conftest import cli, untrained_digits_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    return untrained_digits_checkpoint(tmp_path_factory.mktemp("progress"))


def test_help_imports_neither_torch_nor_the_upper_layers():
    code = ("import runpy, sys\nsys.argv = ['compressor', '--help']\ntry:\n    runpy.run_module('compressor', "
            "run_name='__main__')\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'onnx', 'torchvision', "
            "'matplotlib', 'pruners', 'exporters'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    for name in ("train", "eval", "inspect", "list", "prune", "export", "bench", "demo"):  # every command listed
        assert f"\n  {name} " in res.stdout
    assert "Prune a model" in res.stdout and "Clean accuracy" in res.stdout  # with its summary, read from source


def test_a_mistyped_command_is_suggested_among_commands_not_yet_loaded(capsys):
    code, _, err = cli(capsys, "prnue")
    assert code == 2 and "Did you mean 'prune'?" in err


def test_bars_show_only_on_a_terminal_or_when_forced(monkeypatch, capsys):
    monkeypatch.delenv(FORCE_ENV, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress.enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress.enabled()
    with progress.quiet():
        assert not progress.enabled()
        with progress.quiet(False):  # an inner block cannot undo an outer --quiet
            assert not progress.enabled()
    monkeypatch.setenv(FORCE_ENV, "0")
    assert not progress.enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv(FORCE_ENV, "1")
    assert progress.enabled()


def test_nested_bars_share_one_live_display(monkeypatch, capsys):
    monkeypatch.setenv(FORCE_ENV, "1")
    with bar("outer", 2) as outer:
        with bar("inner", 3) as inner:  # rich allows one live display: a second one would raise
            inner.advance(3)
        outer.advance(2)
    err = capsys.readouterr().err
    assert "outer" in err and "0/3" in err  # the inner bar drawn under the outer one (adding a task redraws)


@pytest.mark.slow
def test_eval_shows_a_bar_per_attack_and_none_when_quiet_json_or_piped(dense, monkeypatch, capsys):
    args = ["eval", str(dense), "--attacks", "pgd20", "--n", "100", "--batch-size", "50", "--device", "cpu"]
    monkeypatch.setenv(FORCE_ENV, "1")
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert "pgd20" in err and "50/100" in err and "100/100" in err  # advanced per batch
    for extra in (["--quiet"], ["--json"]):
        code, out, err = cli(capsys, *args, *extra)
        assert code == 0 and "100/100" not in err and "\x1b[" not in err
    json.loads(out)  # --json's stdout stays pure JSON
    monkeypatch.delenv(FORCE_ENV)
    code, _, err = cli(capsys, *args)  # stderr is captured, not a terminal: clean logs
    assert code == 0 and "100/100" not in err and "\x1b[" not in err


@pytest.mark.slow
def test_training_shows_its_epoch_bar_and_lines(digits, monkeypatch, capsys):
    monkeypatch.setenv(FORCE_ENV, "1")
    info = digits.info
    net = create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.05, adv="none", val_n=64, device="cpu", log_every=4)
    Trainer(net, digits, cfg).fit()
    err = capsys.readouterr().err
    steps = len(digits.train) // 128  # full batches only (drop_last)
    assert f"0/{steps}" in err and "epoch 1/1" in err  # the epoch's bar over its steps
    assert "val clean" in err and "img/s" in err  # and its summary line
    Trainer(net, digits, cfg, quiet=True).fit()
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_export_shows_a_bar_with_elapsed_time(dense, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    monkeypatch.setenv(FORCE_ENV, "1")
    code, _, err = cli(capsys, "export", str(dense), "-f", "onnx", "-o", str(tmp_path / "m.onnx"), "--device", "cpu")
    assert code == 0, err
    assert "export onnx" in err and "0:00:" in err


@pytest.mark.slow
def test_inspect_of_a_state_dict_reports_classes_and_macs_and_counts_layers_once(dense, tmp_path, capsys):
    sd = tmp_path / "sd.pt"
    torch.save(load_model(dense).model.state_dict(), sd)
    code, out, err = cli(capsys, "inspect", str(sd), "--arch", "cnn-small", "--dataset", "digits", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["num_classes"] == 10 and rep["dataset"] == "digits" and rep["input_shape"] == [1, 8, 8]
    assert rep["macs"] and rep["macs"] > 0 and all(r["macs"] is not None for r in rep["cost_layers"])
    stats = {r["layer"]: r["params"] for r in rep["layers"]}
    assert stats == {r["layer"]: r["params"] for r in rep["cost_layers"]}  # the final Linear's bias in neither
    assert stats["classifier.3"] == 10 * 128


def test_paused_stops_the_live_display_and_restarts_it(monkeypatch):
    """Latency timing runs with no refresh thread redrawing the bars."""
    from compressor import progress

    monkeypatch.setenv(progress.FORCE_ENV, "1")
    with progress.bar("outer", 2) as b:
        live = progress._live.get()
        assert live.live.is_started
        with progress.paused():
            assert not live.live.is_started
        assert live.live.is_started
        b.advance()
    with progress.paused():  # no display: nothing to pause
        pass
