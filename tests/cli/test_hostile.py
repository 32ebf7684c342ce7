"""Hostile input, table-driven: every case exits 2 with exactly one line naming the problem, no traceback, and
leaves every file in the working folder as it was (nothing created, changed or deleted)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.checkpoint import save_checkpoint
from compressor.models import create_model
from compressor.training import Callback, TrainConfig
from compressor.workflows import model_kwargs, train

from ..conftest import cli
from ..test_no_code import CRAFTS, _rewrite

TINY = {"width": 4, "hidden": 8}


class _Interrupt(Callback):
    def on_epoch_begin(self, trainer, epoch):
        if epoch == 1:
            raise KeyboardInterrupt


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


def _safetensors(path: Path, meta: dict) -> Path:
    from safetensors.torch import save_file

    save_file({"w::values": torch.ones(2), "w::bitmask": torch.tensor([3], dtype=torch.uint8)}, str(path),
              metadata={"format": "compressor.sparse-safetensors", "format_version": "1", "sparse": "{}", **meta})
    return path


@pytest.fixture(scope="module")
def ws(digits, tmp_path_factory):
    """The working folder: small models, broken files and existing outputs, built once."""
    root = tmp_path_factory.mktemp("hostile")
    kw = {**model_kwargs(digits.info), **TINY}
    torch.manual_seed(0)
    model = create_model("cnn-small", **kw).eval()
    meta = {"arch": "cnn-small", "arch_kwargs": kw, "dataset": digits.info.as_dict()}
    save_checkpoint(root / "tiny.pt", model, **meta)
    torch.save(model.state_dict(), root / "sd.pt")
    huge = torch.load(root / "tiny.pt", weights_only=True)  # a 13 KB file declaring a 200 TB architecture
    huge["arch_kwargs"].update(width=10**6, num_classes=10**6)
    torch.save(huge, root / "huge.pt")
    torch.save(model, root / "module.pt")
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        bad = create_model("cnn-small", **kw)
        with torch.no_grad():
            bad.features[0].weight[0, 0, 0, 0] = value
        save_checkpoint(root / f"{name}.pt", bad, **meta)
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "json.pt").write_text(json.dumps({"weights": [1, 2, 3]}))
    (root / "junk.pt2").write_bytes(b"\x00" * 64)
    (root / "folder").mkdir()
    (root / "afile").write_text("not a folder")
    x = digits.split("test").head(2).float_images()
    torch.export.save(torch.export.export(model, (x,)), str(root / "ok.pt2"))
    for craft, make in CRAFTS.items():
        _rewrite(root / "ok.pt2", root / f"{craft}.pt2", make(str(root / "ran")))
    rng = np.random.default_rng(0)
    gray = lambda n, s=8: (rng.random((n, 1, s, s)) * 255).astype(np.uint8)  # noqa: E731
    _npz(root / "bigy.npz", gray(600), np.arange(600) % 20)
    _npz(root / "rgb.npz", (rng.random((300, 3, 8, 8)) * 255).astype(np.uint8), np.arange(300) % 10)
    _npz(root / "size.npz", gray(300, 16), np.arange(300) % 10)
    np.savez(root / "obj.npz", x=np.array([object()] * 4, dtype=object), y=np.arange(4))
    _safetensors(root / "badsparse.safetensors", {"sparse": json.dumps({"w": {"shape": "big"}})})
    _safetensors(root / "huge.safetensors", {"sparse": json.dumps({"w": {"shape": [100000, 100000]}})})
    _safetensors(root / "version.safetensors", {"format_version": "one"})
    _safetensors(root / "badjson.safetensors", {"sparse": "{not json"})
    (root / "random.safetensors").write_bytes(np.random.default_rng(1).bytes(500))
    for name in ("good.onnx", "taken.pt", "adv.npz"):
        (root / name).write_bytes(b"precious " + name.encode())
    (root / "demo").mkdir()
    (root / "demo" / "report.json").write_text('{"precious": true}')
    (root / "bench").mkdir()
    (root / "bench" / "bench.json").write_text('{"precious": true}')
    # an interrupted training run (state after its first of two epochs)
    cfg = TrainConfig(epochs=2, batch_size=256, lr=0.05, adv="none", val_n=50, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train("cnn-small", "digits", root / "run.pt", cfg, arch_kwargs=TINY, callbacks=[_Interrupt()], quiet=True)
    assert (root / "run.pt.state").is_file()
    return root


R = "{root}"
TRAIN_RUN = ["train", "-o", f"{R}/run.pt", "--epochs", "2", "--batch-size", "256", "--lr", "0.05", "--adv", "none",
             "--val-n", "50", "--device", "cpu", "--resume"]
PRUNE = ["prune", f"{R}/tiny.pt", "-m", "magnitude", "--sparsity", "0.5", "-o", f"{R}/out.pt"]
EXPORT = ["export", f"{R}/tiny.pt", "-f", "onnx", "-o", f"{R}/out.onnx"]
EVAL = ["eval", f"{R}/tiny.pt", "--attacks", "fgsm", "--n", "4"]

# (id, argv, regex the single error line must match)
CASES = [
    # inspect: unreadable, hostile and corrupt model files
    ("inspect-missing", ["inspect", f"{R}/nope.pt"], "does not exist"),
    ("inspect-directory", ["inspect", f"{R}/folder"], "is a directory"),
    ("inspect-random-bytes", ["inspect", f"{R}/random.pt"], "not a PyTorch file"),
    ("inspect-json", ["inspect", f"{R}/json.pt"], "not a PyTorch file"),
    ("inspect-nan-weights", ["inspect", f"{R}/nan.pt"], "non-finite weights"),
    ("inspect-inf-weights", ["inspect", f"{R}/inf.pt"], "non-finite weights"),
    ("inspect-pickled-module", ["inspect", f"{R}/module.pt"], "pickled.*--trust-pickle"),
    ("inspect-huge-arch-kwargs", ["inspect", f"{R}/huge.pt"], r"'arch_kwargs.num_classes' holds int 1000000, "
                                                                r"expected an integer in \[1, 100,000\]"),
    ("eval-huge-arch-kwargs", ["eval", f"{R}/huge.pt", "--attacks", "fgsm"], "'arch_kwargs.num_classes' holds"),
    ("inspect-state-dict-no-arch", ["inspect", f"{R}/sd.pt"], "--arch"),
    ("inspect-pt2-pickled-weight", ["inspect", f"{R}/pickled-weight.pt2"], "pt2 program.*--trust-program"),
    ("inspect-pt2-opaque-constant", ["inspect", f"{R}/opaque-constant.pt2"], "pt2 program.*--trust-program"),
    ("inspect-pt2-sample-inputs", ["inspect", f"{R}/sample-inputs.pt2"], "pt2 program.*--trust-program"),
    ("inspect-pt2-guard-code", ["inspect", f"{R}/guard-code.pt2"], "pt2 program.*--trust-program"),
    ("inspect-pt2-junk", ["inspect", f"{R}/junk.pt2"], "not a .pt2 archive"),
    ("inspect-safetensors-bad-sparse", ["inspect", f"{R}/badsparse.safetensors"], "no valid shape"),
    ("inspect-safetensors-huge-shape", ["inspect", f"{R}/huge.safetensors"], "bitmask.*corrupt"),
    ("inspect-safetensors-version", ["inspect", f"{R}/version.safetensors"], "format_version 'one'"),
    ("inspect-safetensors-bad-json", ["inspect", f"{R}/badjson.safetensors"], "not valid JSON"),
    ("inspect-safetensors-random", ["inspect", f"{R}/random.safetensors"], "cannot read"),
    # eval: budgets, devices, datasets that do not fit the model, outputs
    ("eval-eps-negative", [*EVAL, "--eps", "-0.1"], r"must be > 0, got '-0.1'"),
    ("eval-eps-overflow", [*EVAL, "--eps", "1e309"], "too large"),
    ("eval-eps-above-pixels", [*EVAL, "--eps", "5"], r"\[0, 1\] pixel range"),
    ("eval-eps-text", [*EVAL, "--eps", "eight"], "not a number"),
    ("eval-eps-zero-division", [*EVAL, "--eps", "8/0"], "divides by zero"),
    ("eval-device-cuda", [*EVAL, "--device", "cuda"], "no CUDA GPU"),
    ("eval-device-bogus", [*EVAL, "--device", "tpu"], "--device"),
    ("eval-unknown-attack", ["eval", f"{R}/tiny.pt", "--attacks", "nosuchattack"], "nosuchattack"),
    ("eval-n-zero", ["eval", f"{R}/tiny.pt", "--attacks", "fgsm", "--n", "0"], "--n"),
    ("eval-batch-size-zero", [*EVAL, "--batch-size", "0"], "--batch-size"),
    ("eval-labels-beyond-classes", [*EVAL, "--dataset", f"npz:{R}/bigy.npz"], "labels up to 19.*10 outputs"),
    ("eval-rgb-on-gray-model", [*EVAL, "--dataset", f"npz:{R}/rgb.npz"], "takes 1x8x8 images.*3x8x8"),
    ("eval-other-image-size", [*EVAL, "--dataset", f"npz:{R}/size.npz"], "takes 1x8x8 images.*1x16x16"),
    ("eval-object-npz", [*EVAL, "--dataset", f"npz:{R}/obj.npz"], "object array"),
    ("eval-npz-missing", [*EVAL, "--dataset", f"npz:{R}/nope.npz"], "no file"),
    ("eval-unknown-dataset", [*EVAL, "--dataset", "imagenet-99k"], "imagenet-99k"),
    ("eval-num-classes-zero", ["eval", f"{R}/sd.pt", "--arch", "cnn-small", "--dataset", "digits",
                               "--num-classes", "0"], "--num-classes must be at least 1"),
    ("eval-std-zero", ["eval", f"{R}/sd.pt", "--arch", "cnn-small", "--dataset", "digits", "--mean", "0.3",
                       "--std", "0"], "std .* positive"),
    ("eval-save-adv-exists", [*EVAL, "--save-adv", f"{R}/adv.npz"], "already exists.*--force"),
    ("eval-save-adv-under-file", [*EVAL, "--save-adv", f"{R}/afile/adv.npz"], "is a file, not a folder"),
    ("eval-pt2-pickled", ["eval", f"{R}/pickled-weight.pt2", "--dataset", "digits"], "--trust-program"),
    ("eval-pt2-guard-code", ["eval", f"{R}/guard-code.pt2", "--dataset", "digits"], "--trust-program"),
    # train: outputs, devices, settings, resuming
    ("train-output-under-file", ["train", "-o", f"{R}/afile/m.pt", "--epochs", "1"], "is a file, not a folder"),
    ("train-output-exists", ["train", "-o", f"{R}/taken.pt", "--epochs", "1"], "already exists.*--force"),
    ("train-device-cuda", ["train", "-o", f"{R}/new.pt", "--device", "cuda"], "no CUDA GPU"),
    ("train-eps-above-pixels", ["train", "-o", f"{R}/new.pt", "--eps", "5"], r"\[0, 1\] pixel range"),
    ("train-epochs-zero", ["train", "-o", f"{R}/new.pt", "--epochs", "0"], "--epochs"),
    ("train-unknown-adv", ["train", "-o", f"{R}/new.pt", "--adv", "fgsm-ish"], "unknown --adv"),
    ("train-lr-zero", ["train", "-o", f"{R}/new.pt", "--lr", "0"], "--lr must be a finite number > 0"),
    ("train-steps-zero", ["train", "-o", f"{R}/new.pt", "--steps", "0"], "--steps"),
    ("train-unknown-arch", ["train", "-o", f"{R}/new.pt", "--arch", "resnet-9000"], "resnet-9000"),
    ("train-resume-nothing", ["train", "-o", f"{R}/new.pt", "--resume"], "no training state"),
    ("train-resume-other-arch", [*TRAIN_RUN, "--arch", "convnet-mnist"], "other settings: arch convnet-mnist"),
    ("train-resume-other-lr-eps", [*TRAIN_RUN[:-1], "--lr", "0.5", "--resume"], r"lr 0.5 \(saved run: 0.05\)"),
    ("train-state-left-no-resume", TRAIN_RUN[:-1], "interrupted run.*--resume"),
    ("train-batch-size-zero", ["train", "-o", f"{R}/new.pt", "--batch-size", "0"], "--batch-size"),
    # prune
    ("prune-sparsity-zero", [*PRUNE[:4], "--sparsity", "0", *PRUNE[6:]], "prunes nothing"),
    ("prune-nan-weights", ["prune", f"{R}/nan.pt", *PRUNE[2:]], "non-finite weights"),
    ("prune-pt2-pickled", ["prune", f"{R}/pickled-weight.pt2", *PRUNE[2:], "--dataset", "digits"], "cannot be pruned"),
    ("prune-output-exists", [*PRUNE[:-1], f"{R}/taken.pt"], "already exists.*--force"),
    ("prune-output-under-file", [*PRUNE[:-1], f"{R}/afile/p.pt"], "is a file, not a folder"),
    ("prune-unknown-method", ["prune", f"{R}/tiny.pt", "-m", "snip-snap", "-o", f"{R}/out.pt"], "snip-snap"),
    ("prune-resume-nothing", [*PRUNE, "--resume"], "no pruning state"),
    ("prune-eps-above-pixels", [*PRUNE, "--eps", "5"], r"\[0, 1\] pixel range"),
    ("prune-device-cuda", [*PRUNE, "--device", "cuda"], "no CUDA GPU"),
    ("prune-labels-beyond-classes", [*PRUNE, "--dataset", f"npz:{R}/bigy.npz"], "labels up to 19"),
    # export
    ("export-batch-sizes-empty-item", [*EXPORT, "--batch-sizes", "1,,2"], "empty item"),
    ("export-batch-sizes-zero", [*EXPORT, "--batch-sizes", "0,4"], ">= 1"),
    ("export-unknown-format", ["export", f"{R}/tiny.pt", "-f", "coreml", "-o", f"{R}/out.mlmodel"], "coreml"),
    ("export-output-exists", [*EXPORT[:-1], f"{R}/good.onnx"], "already exists.*--force"),
    ("export-wrong-suffix", [*EXPORT[:-1], f"{R}/out.engine"], r"writes \.onnx"),
    ("export-nan-weights", ["export", f"{R}/nan.pt", *EXPORT[2:]], "non-finite weights"),
    ("export-pt2-pickled", ["export", f"{R}/pickled-weight.pt2", *EXPORT[2:], "--dataset", "digits"],
     "--trust-program"),
    ("export-missing-model", ["export", f"{R}/nope.pt", *EXPORT[2:]], "does not exist"),
    # bench, demo, list
    ("bench-batch-sizes-empty-item", ["bench", f"{R}/tiny.pt", "--batch-sizes", "1,,2", "--out", f"{R}/b2"],
     "empty item"),
    ("bench-outputs-exist", ["bench", f"{R}/tiny.pt", "--out", f"{R}/bench"], "already exists.*--force"),
    ("bench-eps-negative", ["bench", f"{R}/tiny.pt", "--eps", "-1", "--out", f"{R}/b2"], "must be > 0"),
    ("demo-prune-epochs", ["demo", "--out", f"{R}/d2", "--prune-epochs", "1"], "--prune-epochs 1"),
    ("demo-report-exists", ["demo", "--out", f"{R}/demo"], "report.json already exists"),
    ("demo-out-under-file", ["demo", "--out", f"{R}/afile/d"], "is a file, not a folder"),
    ("demo-epochs-zero", ["demo", "--out", f"{R}/d2", "--epochs", "0"], "--epochs"),
    ("list-unknown-kind", ["list", "gadgets"], "gadgets"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def _check(capsys, root: Path, argv: list[str], pattern: str) -> None:
    before = _snapshot(root)
    code, out, err = cli(capsys, *[a.replace(R, str(root)) for a in argv])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"exit {code}: {err}{out}"
    assert "Traceback" not in err + out
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert _snapshot(root) == before, "files were created, changed or deleted"
    assert not (root / "ran").exists()  # no code from a crafted file ran


@pytest.mark.parametrize("argv,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input(ws, capsys, argv, pattern):
    _check(capsys, ws, argv, pattern)


def test_enough_cases():
    assert len(CASES) >= 60
    assert {c[1][0] for c in CASES} == {"inspect", "eval", "train", "prune", "export", "bench", "demo", "list"}


@pytest.mark.slow
def test_failed_force_export_keeps_the_good_file(ws, capsys, monkeypatch):
    import exporters.onnx as onnx_exporter
    from compressor.errors import CompressorError

    def broken(*args, **kwargs):
        raise CompressorError("the ONNX export does not match PyTorch (simulated)")

    monkeypatch.setattr(onnx_exporter, "check_parity", broken)
    _check(capsys, ws, [*EXPORT[:-1], f"{R}/good.onnx", "--force", "--parity-n", "4"], "does not match")
    assert (ws / "good.onnx").read_bytes() == b"precious good.onnx"


def test_second_run_on_a_locked_output_is_refused_at_once(ws, capsys):
    from filelock import FileLock

    from compressor.io import lock_path

    other = FileLock(str(lock_path((ws / "locked.pt").resolve())), timeout=0, is_singleton=False, thread_local=False)
    other.acquire()  # another run writing locked.pt
    try:
        _check(capsys, ws, ["train", "-o", f"{R}/locked.pt", "--epochs", "1"], "another compressor run is writing")
    finally:
        other.release()
        lock_path((ws / "locked.pt").resolve()).unlink(missing_ok=True)


@pytest.mark.parametrize("command", ["train", "prune"])
def test_ctrl_c_is_one_line_and_exit_130(ws, capsys, monkeypatch, command):
    import compressor.cli.train as train_cli
    import pruners.cli as prune_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "train", interrupted)
    monkeypatch.setattr(prune_cli, "prune", interrupted)
    argv = ["train", "-o", str(ws / "ctrl-c.pt")] if command == "train" else [
        a.replace(R, str(ws)) for a in PRUNE[:-1]] + [str(ws / "ctrl-c.pt")]
    code, out, err = cli(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130
    assert len(lines) == 1 and "--resume" in lines[0], err
