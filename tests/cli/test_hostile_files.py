"""Hostile files and silently wrong runs (issue 17, part 5): outputs that are links or inputs, data that is not what
it seems, resumed runs whose inputs changed, files that are not what their names say, and odd errors. Each row exits
2 with one `error:` line, no traceback, and leaves the working folder exactly as it was (the harness of
tests/cli/test_hostile.py)."""

from __future__ import annotations

import os
import shutil


import numpy as np
import pytest
import torch

from compressor.checkpoint import save_checkpoint
from compressor.io import lock_path
from compressor.models import create_model
from compressor.training import TrainConfig
from compressor.training.engine import STATE_FORMAT
from compressor.workflows import model_kwargs, train
from pruners import prune

from ..conftest import cli
from .test_hostile import EVAL, EXPORT, PRUNE, R, TINY, _check, _Interrupt, _npz


def _tiny(digits, seed: int, **over) -> tuple[torch.nn.Module, dict]:
    kw = {**model_kwargs(digits.info), **TINY, **over}
    torch.manual_seed(seed)
    return create_model("cnn-small", **kw).eval(), {"arch": "cnn-small", "arch_kwargs": kw,
                                                    "dataset": digits.info.as_dict()}


@pytest.fixture(scope="module")
def ws(digits, tmp_path_factory):
    """The working folder, built once (resolved: lock files are named after resolved paths)."""
    root = tmp_path_factory.mktemp("hostile-files").resolve()
    model, meta = _tiny(digits, 0)
    save_checkpoint(root / "tiny.pt", model, **meta)
    os.link(root / "tiny.pt", root / "hardlink.pt")
    (root / "adv.npz").write_bytes(b"precious adv.npz")
    (root / "dangling.npz").symlink_to(root / "nowhere.npz")
    (root / "linked.npz").symlink_to(root / "adv.npz")
    (root / "dangling.onnx").symlink_to(root / "nowhere.onnx")
    # data that is not what it seems
    rng = np.random.default_rng(0)
    _npz(root / "binary.npz", (rng.random((300, 1, 8, 8)) > 0.5).astype(np.uint8), np.arange(300) % 10)
    _npz(root / "bright.npz", rng.random((300, 1, 8, 8)) * 2, np.arange(300) % 10)
    _npz(root / "crc.npz", (rng.random((300, 1, 8, 8)) * 255).astype(np.uint8), np.arange(300) % 10)
    raw = bytearray((root / "crc.npz").read_bytes())
    raw[raw.index(b"x.npy") + 300] ^= 0xFF  # one flipped pixel: the member's CRC no longer matches
    (root / "crc.npz").write_bytes(bytes(raw))
    # files that are not what their names say
    x = digits.split("test").head(2).float_images()
    torch.jit.save(torch.jit.trace(model, x), str(root / "torchscript.pt"))
    torch.export.save(torch.export.export(model, (x,)), str(root / "program.pt2"))
    shutil.copy(root / "program.pt2", root / "program-renamed.pt")
    shutil.copy(root / "tiny.pt", root / "checkpoint-renamed.pt2")
    os.mkfifo(root / "fifo.pt")
    # odd lock files
    lock_path(root / "linklock.pt").symlink_to(root / "adv.npz")
    lock_path(root / "dirlock.pt").mkdir()
    # an interrupted training run on an npz file, which is then relabelled
    labels = np.arange(300) % 10
    _npz(root / "labels.npz", (rng.random((300, 1, 8, 8)) * 255).astype(np.uint8), labels)
    cfg = TrainConfig(epochs=2, batch_size=256, lr=0.05, adv="none", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train("cnn-small", f"npz:{root}/labels.npz", root / "relabelled.pt", cfg, arch_kwargs=TINY,
              callbacks=[_Interrupt()], quiet=True)
    with np.load(root / "labels.npz") as data:
        _npz(root / "labels.npz", data["x"], (labels + 1) % 10)
    # the training state of a run whose state file lost keys
    torch.save({"format": STATE_FORMAT, "format_version": 1, "epoch": 1}, root / "incomplete.pt.state")
    # a pruning job's phase states, whose source model file is then replaced by another model
    save_checkpoint(root / "source.pt", model, **meta)
    prune(root / "source.pt", "magnitude", root / "pruned.pt", options={"sparsity": 0.5},
          config=TrainConfig(batch_size=256, adv="none", device="cpu"), epochs_prune=1, epochs_finetune=1,
          eval_attack="fgsm", eval_n=8, keep_state=True, quiet=True)
    (root / "pruned.pt").unlink()  # as if interrupted: the states are left, the output is not written
    other, other_meta = _tiny(digits, 1, width=8)
    save_checkpoint(root / "source.pt", other, **other_meta, force=True)
    return root


PRUNE_RESUME = ["prune", f"{R}/source.pt", "-m", "magnitude", "--sparsity", "0.5", "-o", f"{R}/pruned.pt",
                "--epochs-prune", "1", "--epochs-finetune", "1", "--adv", "none", "--batch-size", "256",
                "--eval-attack", "fgsm", "--eval-n", "8", "--device", "cpu", "--resume"]
LAB_TRAIN = ["train", "-o", f"{R}/relabelled.pt", "--epochs", "2", "--batch-size", "256", "--adv", "none",
             "--device", "cpu", "--dataset", f"npz:{R}/labels.npz"]

# (id, argv, regex the single error line must match)
CASES = [
    # outputs that are links, or an input
    ("eval-save-adv-dangling-symlink", [*EVAL, "--save-adv", f"{R}/dangling.npz"], "is a symbolic link"),
    ("eval-save-adv-symlink-force", [*EVAL, "--save-adv", f"{R}/linked.npz", "--force"], "is a symbolic link"),
    ("eval-save-adv-onto-model-force", [*EVAL, "--save-adv", f"{R}/tiny.pt", "--force"], "is the input"),
    ("eval-save-adv-onto-hard-link-force", [*EVAL, "--save-adv", f"{R}/hardlink.pt", "--force"], "is the input"),
    ("eval-save-adv-onto-dataset-force", [*EVAL, "--dataset", f"npz:{R}/labels.npz", "--save-adv",
                                          f"{R}/labels.npz", "--force"], "is the input"),
    ("prune-output-is-input-force", [*PRUNE[:-1], f"{R}/tiny.pt", "--force"], "is the input"),
    ("export-output-dangling-symlink", [*EXPORT[:-1], f"{R}/dangling.onnx"], "is a symbolic link"),
    # data that is not what it seems
    ("eval-binarised-uint8", [*EVAL, "--dataset", f"npz:{R}/binary.npz"], "looks like 0/1.*multiply it by 255"),
    ("eval-floats-above-one", [*EVAL, "--dataset", f"npz:{R}/bright.npz"], r"floats in \[0, 1\]"),
    ("eval-npz-bad-crc", [*EVAL, "--dataset", f"npz:{R}/crc.npz"], "member 'x'.*corrupt or truncated"),
    ("train-val-size-zero", ["train", "-o", f"{R}/new.pt", "--val-size", "0"], "--val-size must be"),
    # options the checkpoint records itself
    ("eval-mean-std-over-checkpoint", [*EVAL, "--mean", "0.1", "--std", "0.2"], "own input normalisation"),
    ("eval-arch-kwargs-over-checkpoint", [*EVAL, "--dataset", "digits", "--arch", "cnn-small", "--arch-kwargs",
                                          '{"width": 16}'],
     "records --arch-kwargs .*drop --arch-kwargs"),
    ("eval-num-classes-over-checkpoint", [*EVAL, "--num-classes", "7"], "records 10 classes: drop --num-classes"),
    ("eval-num-classes-over-program", ["eval", f"{R}/program.pt2", "--trust-program", "--dataset", "digits",
                                       "--num-classes", "7"],
     "whole model.*drop --arch-kwargs and --num-classes"),
    # resumed runs whose inputs changed, or whose state is incomplete
    ("train-resume-relabelled-data", [*LAB_TRAIN, "--resume"], "the data changed since the saved run"),
    ("prune-resume-source-replaced", PRUNE_RESUME, "the source model file changed since the saved run"),
    ("train-resume-incomplete-state", ["train", "-o", f"{R}/incomplete.pt", "--epochs", "1", "--resume"],
     "lacks .*model.*incomplete"),
    # files that are not what their names say
    ("inspect-torchscript", ["inspect", f"{R}/torchscript.pt"], "TorchScript archive"),
    ("inspect-pt2-renamed-pt", ["inspect", f"{R}/program-renamed.pt"], r"torch.export program .* named \.pt: "
                                                                       "rename it to program-renamed.pt2"),
    ("inspect-pt-renamed-pt2", ["inspect", f"{R}/checkpoint-renamed.pt2"], "torch.save archive, not a torch.export"),
    ("inspect-fifo", ["inspect", f"{R}/fifo.pt"], "FIFO"),
    ("eval-fifo", ["eval", f"{R}/fifo.pt", "--dataset", "digits"], "FIFO"),
    # odd errors
    ("train-lock-symlink", ["train", "-o", f"{R}/linklock.pt", "--epochs", "1"], "lock file .* symbolic link"),
    ("train-lock-directory", ["train", "-o", f"{R}/dirlock.pt", "--epochs", "1"], "lock file .* directory"),
    ("prune-transform-channels-text", ["prune", f"{R}/tiny.pt", "-m", "none", "--transform", "channels:abc",
                                       "-o", f"{R}/out.pt"], "channels:abc: the ratio"),
    ("prune-transform-shortcuts-unknown", ["prune", f"{R}/tiny.pt", "-m", "none", "--transform",
                                           "channels:0.5,shortcuts=drop", "-o", f"{R}/out.pt"],
     "shortcuts='drop' is not a valid select or keep"),
    ("eval-seed-overflow", [*EVAL, "--seed", str(2**70)], "--seed must be in 0..4294967295"),
    ("train-seed-overflow", ["train", "-o", f"{R}/new.pt", "--seed", str(2**70)], "--seed must be in"),
    ("export-opset-too-new", [*EXPORT, "--opset", "99"], "newer than the installed onnx"),
    # refused runs create nothing, not even the folders of their outputs
    ("train-refused-in-new-folder", ["train", "-o", f"{R}/made/here/m.pt", "--epochs", "1", "--dataset",
                                     f"npz:{R}/binary.npz"], "looks like 0/1"),
    ("demo-sparsity-zero", ["demo", "--out", f"{R}/demo-new", "--sparsity", "0"], "prunes nothing"),
]


@pytest.mark.parametrize("argv,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file(ws, capsys, argv, pattern):
    _check(capsys, ws, argv, pattern)


def test_eval_ctrl_c_does_not_speak_of_resume(ws, capsys, monkeypatch):
    import compressor.cli.evaluate as eval_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(eval_cli, "evaluate_model", interrupted)
    code, out, err = cli(capsys, *[a.replace(R, str(ws)) for a in EVAL])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130
    assert len(lines) == 1 and lines[0].startswith("interrupted") and "--resume" not in lines[0], err


def test_several_state_dicts_name_the_one_used(ws, digits, caplog, tmp_path):
    from compressor import load_model

    model, _ = _tiny(digits, 0)
    ema, _ = _tiny(digits, 1)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "epoch": 3}, tmp_path / "two.pt")
    with caplog.at_level("WARNING", logger="compressor.checkpoint"):
        loaded = load_model(tmp_path / "two.pt", arch="cnn-small", arch_kwargs={**model_kwargs(digits.info), **TINY})
    assert [r.getMessage() for r in caplog.records] == [
        f"note: {tmp_path / 'two.pt'} holds 2 state dicts (model, ema): using 'model'; save another alone "
        "(torch.save(obj[KEY], FILE)) to use it"]
    assert torch.equal(loaded.model.state_dict()["features.0.weight"], model.state_dict()["features.0.weight"])


def test_bench_warns_when_the_engine_comes_from_another_model(ws, digits, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    other, meta = _tiny(digits, 1)
    save_checkpoint(tmp_path / "other.pt", other, **meta)
    code, _, err = cli(capsys, "export", str(tmp_path / "other.pt"), "-f", "onnx", "-o", str(tmp_path / "other.onnx"),
                       "--parity-n", "4")
    assert code == 0, err
    code, out, err = cli(capsys, "bench", str(ws / "tiny.pt"), "--engine", str(tmp_path / "other.onnx"),
                         "--batch-sizes", "1", "--warmup", "1", "--runs", "2", "--attacks", "", "--square-queries",
                         "5", "--n", "64", "--out", str(tmp_path / "b"), "--device", "cpu", "--json")
    assert code == 0, err
    assert "exported from another model" in err, err
