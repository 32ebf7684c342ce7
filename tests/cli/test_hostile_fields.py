"""Hostile fields (issue 17, part 4): every field of a file and every size an option declares is checked before use.

Each row exits 2 with one `error:` line, no traceback, and leaves the working folder as it was (the checks of
tests/cli/test_hostile.py, reused)."""

from __future__ import annotations

import copy
import io
import json
import zipfile


import numpy as np
import numpy.lib.format as npformat
import pytest
import torch

from ..conftest import cli, untrained_digits_checkpoint
from .test_hostile import R, _check

ARCH_KWARGS = "arch_kwargs"


def _npy(shape: tuple, dtype: str, payload: bytes) -> bytes:
    """An .npy member whose header declares `shape` whatever `payload` holds."""
    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": npformat.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                                          "shape": shape})
    return buf.getvalue() + payload


def _labels_npy(n: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(n) % 2)
    return buf.getvalue()


# name -> how a good checkpoint's dict is spoiled
SPOILED = {
    "ak-int": lambda d: d.__setitem__("arch_kwargs", 3),
    "ak-width-negative": lambda d: d["arch_kwargs"].__setitem__("width", -4),
    "ak-width-fraction": lambda d: d["arch_kwargs"].__setitem__("width", 4.5),
    "ak-classes-text": lambda d: d["arch_kwargs"].__setitem__("num_classes", "ten"),
    "ak-std-zero": lambda d: d["arch_kwargs"].__setitem__("std", [0.0]),
    "dataset-int": lambda d: d.__setitem__("dataset", 5),
    "dataset-name-int": lambda d: d["dataset"].__setitem__("name", 5),
    "compression-int": lambda d: d.__setitem__("compression", 7),
    "compression-item-int": lambda d: d.__setitem__("compression", [1]),
    "compression-no-name": lambda d: d.__setitem__("compression", [{"structural": True}]),
    "arch-none": lambda d: d.__setitem__("arch", None),
    "state-dict-int": lambda d: d.__setitem__("state_dict", 1),
    "state-dict-text": lambda d: d["state_dict"].__setitem__("extra", "not a tensor"),
    "provenance-int": lambda d: d.__setitem__("provenance", 1),
    "provenance-command-list": lambda d: d.__setitem__("provenance", {"command": [1, 2]}),
    "input-shape-int": lambda d: d["dataset"].__setitem__("input_shape", 5),
    "input-shape-huge": lambda d: d["dataset"].__setitem__("input_shape", [1, 60000, 60000]),
    "classes-int": lambda d: d.__setitem__("classes", 3),
    "unknown-nested": lambda d: d.__setitem__("extra", json.loads("[" * 40 + "]" * 40)),
}
WIDE = {"width": 20000, "hidden": 20000}  # each in range; together 10+ GB of weights in a 13 KB file


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Spoiled checkpoints, hostile npz files and a plain state dict, built once."""
    root = tmp_path_factory.mktemp("fields")
    good = untrained_digits_checkpoint(root)
    base = torch.load(good, weights_only=True)
    torch.save(base["state_dict"], root / "sd.pt")
    for name, spoil in SPOILED.items():
        d = copy.deepcopy(base)
        spoil(d)
        torch.save(d, root / f"{name}.pt")
    wide = copy.deepcopy(base)
    wide["arch_kwargs"].update(WIDE)
    torch.save(wide, root / "wide.pt")
    labels = _labels_npy(10)
    with zipfile.ZipFile(root / "tib.npz", "w") as z:  # a 630-byte file declaring 58 TiB of images
        z.writestr("x.npy", _npy((2**20, 3, 2**12, 2**12), "uint8", b"\0" * 100))
        z.writestr("y.npy", labels)
    with zipfile.ZipFile(root / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:  # 300 KB inflating to 300 MB
        n = 300 * 2**20 // (3 * 32 * 32)
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(_npy((n, 3, 32, 32), "uint8", b""))
            for _ in range(300):
                f.write(b"\0" * 2**20)
        z.writestr("y.npy", labels)
    with zipfile.ZipFile(root / "short.npz", "w") as z:
        z.writestr("x.npy", _npy((10, 1, 8, 8), "uint8", b"\0" * 100))
        z.writestr("y.npy", labels)
    np.savez(root / "label.npz", x=np.zeros((10, 1, 8, 8), np.uint8), y=np.array([0] * 9 + [2**62]))
    return root


GOOD = f"{R}/dense.pt"
SD = ["eval", f"{R}/sd.pt", "--arch", "cnn-small", "--dataset", "digits", "--attacks", "fgsm", "--n", "4"]
DEEP = "{" + '"a": {' * 5000 + "}" * 5001

CASES = [
    *[(f"inspect-{name}", ["inspect", f"{R}/{name}.pt"], "not a valid compressor checkpoint: its '")
      for name in SPOILED],
    ("inspect-width-negative-says-field", ["inspect", f"{R}/ak-width-negative.pt"],
     r"'arch_kwargs.width' holds int -4, expected an integer in \[1, "),
    ("inspect-width-fraction-says-field", ["inspect", f"{R}/ak-width-fraction.pt"],
     r"'arch_kwargs.width' holds float 4.5"),
    ("inspect-input-shape-huge-says-side", ["inspect", f"{R}/input-shape-huge.pt"],
     r"'dataset.input_shape\[1\] \(height\)' holds int 60000"),
    ("inspect-widths-in-range-beyond-the-file", ["inspect", f"{R}/wide.pt"],
     "declares an architecture of .* GB of weights but holds .* MB.*nothing was allocated"),
    ("eval-arch-none", ["eval", f"{R}/arch-none.pt", "--attacks", "fgsm", "--n", "4"], "'arch' holds NoneType"),
    ("prune-compression-int", ["prune", f"{R}/compression-int.pt", "-m", "magnitude", "--sparsity", "0.5", "-o",
                               f"{R}/out.pt"], "'compression' holds int 7"),
    ("export-dataset-int", ["export", f"{R}/dataset-int.pt", "-f", "onnx", "-o", f"{R}/out.onnx"],
     "'dataset' holds int 5"),
    ("eval-npz-58-tib", ["eval", GOOD, "--attacks", "fgsm", "--n", "4", "--dataset", f"npz:{R}/tib.npz"],
     r"declares shape \(1048576, 3, 4096, 4096\) of uint8, which would take .* memory budget.*nothing was "
     "allocated"),
    ("eval-npz-deflate-bomb", ["eval", GOOD, "--attacks", "fgsm", "--n", "4", "--dataset", f"npz:{R}/bomb.npz"],
     "compression bomb"),
    ("eval-npz-truncated-member", ["eval", GOOD, "--attacks", "fgsm", "--dataset", f"npz:{R}/short.npz"],
     r"declares shape \(10, 1, 8, 8\) of uint8 \(640 bytes\) but holds 100 bytes"),
    ("eval-npz-label-2-62", ["eval", GOOD, "--attacks", "fgsm", "--dataset", f"npz:{R}/label.npz"],
     "label 4611686018427387904.*at most 100,000 classes"),
    ("train-npz-label-2-62", ["train", "-o", f"{R}/new.pt", "--dataset", f"npz:{R}/label.npz", "--epochs", "1"],
     "at most 100,000 classes"),
    ("eval-arch-kwargs-width-1e12", [*SD, "--arch-kwargs", '{"width": 1e12}'],
     r"--arch-kwargs: 'width' holds float 1000000000000.0, expected an integer"),
    ("eval-arch-kwargs-width-int-huge", [*SD, "--arch-kwargs", '{"width": 60000}'],
     "model 'cnn-small' with these arguments would take .* GB, more than the memory budget"),
    ("eval-arch-kwargs-negative", [*SD, "--arch-kwargs", '{"hidden": -1}'], "'hidden' holds int -1"),
    ("eval-arch-kwargs-deep", [*SD, "--arch-kwargs", DEEP], "--arch-kwargs nests 5001 levels deep, more than 32"),
    ("eval-num-classes-1e11", [*SD, "--num-classes", str(10**11)], "--num-classes 100,000,000,000 is more than"),
    # what the command line itself refuses: click's four-line usage error becomes one line naming the flag
    ("eval-num-classes-float-text", [*SD, "--num-classes", "1e11"],
     "Invalid value for '--num-classes'.*; see `compressor eval --help`"),
    ("eval-unknown-flag", [*SD, "--bogus"], "No such option: --bogus; see `compressor eval --help`"),
    ("unknown-command", ["evl"], "No such command 'evl'.*; see `compressor --help`"),
    ("eval-missing-model", ["eval"], "Missing argument 'MODEL'; see `compressor eval --help`"),
    ("inspect-num-classes-huge", ["inspect", f"{R}/sd.pt", "--arch", "cnn-small", "--dataset", "digits",
                                  "--num-classes", str(10**9)], "--num-classes .* is more than"),
    ("bench-batch-sizes-1e9", ["bench", GOOD, "--batch-sizes", "1,1000000000", "--out", f"{R}/b"],
     "batch size 1,000,000,000 is more than 65,536.*--batch-sizes"),
    ("export-batch-sizes-1e9", ["export", GOOD, "-f", "onnx", "-o", f"{R}/out.onnx", "--batch-sizes", "1000000000"],
     "is more than 65,536"),
]


@pytest.mark.parametrize("argv,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_field(ws, capsys, argv, pattern):
    _check(capsys, ws, argv, pattern)


def test_json_error_is_a_json_object(ws, capsys):
    code, out, err = cli(capsys, "inspect", str(ws / "ak-int.pt"), "--json")
    assert code == 2
    assert json.loads(out) == {"error": json.loads(out)["error"], "option": None}
    assert "'arch_kwargs' holds int 3" in json.loads(out)["error"]
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code, out, _ = cli(capsys, *[a.replace(R, str(ws)) for a in SD], "--num-classes", "0", "--json")
    assert code == 2 and "--num-classes must be at least 1" in json.loads(out)["error"]


def test_json_error_needs_json(ws, capsys):
    code, out, _ = cli(capsys, "inspect", str(ws / "ak-int.pt"))
    assert code == 2 and out == ""


def test_inspect_counts_macs_of_a_large_recorded_input_without_allocating_it(ws, capsys, monkeypatch):
    """An 8192x8192 input (within bounds; 8.6 GB of activations for real) is counted on the meta device."""
    import compressor.flops as flops

    d = torch.load(ws / "dense.pt", weights_only=True)
    d["dataset"]["input_shape"] = [1, 8192, 8192]
    torch.save(d, ws / "wide-input.pt")
    seen = []
    count = flops._count_macs
    monkeypatch.setattr(flops, "_count_macs", lambda model, x, batch: seen.append(x.device.type) or count(model, x,
                                                                                                          batch))
    try:
        code, out, err = cli(capsys, "inspect", str(ws / "wide-input.pt"), "--no-svd", "--json")
    finally:
        (ws / "wide-input.pt").unlink()
    assert code == 0, err
    assert seen == ["meta"]
    assert json.loads(out)["macs"] > 10**9


def test_macs_on_meta_equal_the_real_count():
    from compressor.flops import _count_macs, _meta_copy
    from compressor.models import create_model

    model = create_model("resnet18")
    meta = _count_macs(_meta_copy(model), torch.empty(1, 3, 32, 32, device="meta"), 1)
    assert meta == _count_macs(model, torch.zeros(1, 3, 32, 32), 1)
    assert next(model.parameters()).device.type == "cpu"  # the model itself is untouched


def test_prune_without_finetuning_succeeds(ws, capsys):
    out = ws / "no-ft.pt"
    code, _, err = cli(capsys, "prune", str(ws / "dense.pt"), "-m", "magnitude", "--sparsity", "0.5",
                       "--epochs-prune", "1", "--epochs-finetune", "0", "--adv", "none", "-o", str(out), "--quiet")
    try:
        assert code == 0, err
        saved = torch.load(out, weights_only=True)
        weights = [v for k, v in saved["state_dict"].items() if k.endswith("weight") and v.dim() > 1]
        assert sum(int((w == 0).sum()) for w in weights) >= 0.45 * sum(w.numel() for w in weights)
    finally:
        out.unlink(missing_ok=True)


def test_bench_without_square_succeeds(ws, capsys):
    out = ws / "bench0"
    code, stdout, err = cli(capsys, "bench", str(ws / "dense.pt"), "--square-queries", "0", "--batch-sizes", "1",
                            "--runs", "2", "--warmup", "0", "--n", "8", "--attacks", "fgsm", "--out", str(out),
                            "--json")
    try:
        assert code == 0, err
        report = json.loads(stdout)
        assert report["settings"]["square_queries"] == 0
        assert all(v["square"] is None for v in report["variants"])
        assert "no Square attack" in (out / "bench.md").read_text()
        from exporters.schema import load_schema, validate

        assert validate(json.loads((out / "bench.json").read_text()), load_schema("bench")) == []
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def test_eval_names_the_held_out_test_part(ws, capsys):
    path = ws / "xy.npz"
    x = (np.random.default_rng(0).random((200, 1, 8, 8)) * 255).astype(np.uint8)
    np.savez(path, x=x, y=np.arange(200) % 10)
    try:
        code, out, err = cli(capsys, "eval", str(ws / "dense.pt"), "--attacks", "fgsm", "--dataset", f"npz:{path}")
        assert code == 0, err
        assert "stratified 20%" in out
        code, out, err = cli(capsys, "eval", str(ws / "dense.pt"), "--attacks", "fgsm", "--dataset", f"npz:{path}",
                             "--json")
        assert json.loads(out)["protocol"]["split_description"].startswith("test split (a stratified 20%")
    finally:
        path.unlink()
