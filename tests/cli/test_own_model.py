"""Bring your own model: a network defined only in this test module goes through prune -> eval -> inspect ->
export -> bench from the CLI by import path; pickled modules; the headline `prune MODEL --method M` as typed; and
the bad input of import paths, each one line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from compressor.checkpoint import load_model, save_checkpoint
from compressor.data import load_dataset
from compressor.models import create_model
from tests.conftest import cli

ARCH = "tests.cli.test_own_model:OwnNet"
TINY = ["--epochs-prune", "2", "--epochs-finetune", "1", "--steps", "2", "--val-n", "64", "--eval-n", "40",
        "--device", "cpu"]


class OwnNet(nn.Module):
    """A user's own network (no Normalize, not in the zoo): conv -> conv -> linear for 8x8 grey images."""

    def __init__(self, width: int = 8, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def not_a_module(**kwargs):
    """A callable that returns something else."""
    return {"oops": 1}


NOT_CALLABLE = 3


def one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.fixture(scope="module")
def own_file(tmp_path_factory):
    """The user's weights as their own loop saved them: {'model': {module.*}, 'epoch', 'acc'} (DataParallel)."""
    torch.manual_seed(0)
    model = OwnNet(width=8)
    path = tmp_path_factory.mktemp("own") / "own.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3, "acc": 0.5}, path)
    return path, model


@pytest.mark.slow
def test_own_model_prune_eval_inspect_export_bench_by_import_path(own_file, tmp_path, capsys):
    path, model = own_file
    pruned = tmp_path / "own.pruned.pt"
    code, out, err = cli(capsys, "prune", str(path), "--arch", ARCH, "--arch-kwargs", '{"width": 8}', "--no-normalize",
                         "--dataset", "digits", "-m", "magnitude", "--sparsity", "0.5", "-o", str(pruned), *TINY,
                         "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["sparsity_achieved"] == pytest.approx(0.5, abs=0.02)
    assert rep["normalization"] == {"mean": None, "std": None, "source": "none: the model's own code gets [0, 1] pixels"}
    assert rep["reload_flags"] == [f"--arch {ARCH}"]
    ck = load_model(pruned, arch=ARCH).checkpoint
    assert ck.arch == ARCH and ck.arch_kwargs["kwargs"] == {"width": 8}

    # the file names an import path: never followed without --arch (or --trust-code)
    one_line_error(*cli(capsys, "eval", str(pruned), "--attacks", "fgsm", "--n", "20"), "--arch " + ARCH,
                   "--trust-code")
    code, out, err = cli(capsys, "eval", str(pruned), "--trust-code", "--attacks", "fgsm", "--n", "40", "--json")
    assert code == 0, err
    code, out, err = cli(capsys, "eval", str(pruned), "--arch", ARCH, "--attacks", "fgsm", "--n", "40", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["dataset"] == "digits" and res["n"] == 40 and res["normalization"]["source"].startswith("none")

    code, out, err = cli(capsys, "inspect", str(pruned), "--arch", ARCH, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert [r["layer"] for r in info["layers"]] == ["body.0", "body.2", "head"]
    assert info["global_sparsity"] == pytest.approx(0.5, abs=0.02) and info["kappa_max"] > 1

    onnx = tmp_path / "own.onnx"
    code, out, err = cli(capsys, "export", str(pruned), "--arch", ARCH, "-f", "onnx", "-o", str(onnx), "--json")
    assert code == 0, err
    assert json.loads(out)["max_abs_diff"] <= 1e-4 and onnx.is_file()

    code, out, err = cli(capsys, "bench", f"{pruned}={onnx}", "--arch", ARCH, "--batch-sizes", "1", "--warmup", "1",
                         "--runs", "2", "--n", "20", "--attacks", "fgsm", "--square-queries", "5", "--out",
                         str(tmp_path / "bench"), "--json")
    assert code == 0, err
    row = json.loads(out)["variants"][0]
    assert row["format"] == "onnx" and row["normalization"]["source"].startswith("none")

    # the compressed checkpoint keeps the import path, and the same rule: --arch (or --trust-code) to rebuild it
    packed = tmp_path / "own.safetensors"
    code, out, err = cli(capsys, "export", str(pruned), "--arch", ARCH, "-f", "sparse-safetensors", "-o", str(packed))
    assert code == 0, err
    one_line_error(*cli(capsys, "inspect", str(packed)), "--arch " + ARCH, "--trust-code")
    back = load_model(packed, arch=ARCH)
    assert back.normalization["source"].startswith("none")
    ref = load_model(pruned, arch=ARCH).model.state_dict()
    assert all(torch.equal(v, back.model.state_dict()[k]) for k, v in ref.items())


def test_plain_state_dict_of_own_model_evaluates_like_the_model(own_file, capsys):
    path, model = own_file
    code, out, err = cli(capsys, "eval", str(path), "--arch", ARCH, "--dataset", "digits", "--attacks", "fgsm",
                         "--n", "60", "--json")
    assert code == 0, err
    digits = load_dataset("digits").test.head(60)
    with torch.no_grad():
        acc = (model.eval()(digits.float_images()).argmax(1) == digits.y).float().mean().item()
    assert json.loads(out)["clean_accuracy"] == pytest.approx(acc)


def test_mean_std_for_an_import_path_put_a_normalize_in_front(own_file, tmp_path, capsys):
    path, model = own_file
    loaded = load_model(path, arch=ARCH, mean=[0.5], std=[0.25])
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.model.eval()(x), model.eval()((x - 0.5) / 0.25), atol=1e-6)
    assert loaded.normalization == {"mean": [0.5], "std": [0.25], "source": "--mean/--std"}
    out = tmp_path / "n.pt"
    save_checkpoint(out, loaded.model, arch=ARCH, arch_kwargs=loaded.checkpoint.arch_kwargs)
    again = load_model(out, arch=ARCH)
    assert again.normalization["mean"] == [0.5] and torch.allclose(again.model.eval()(x), loaded.model(x))


@pytest.mark.parametrize("args, needles", [
    (["--arch", "no_such_module_xyz:Net"], ["cannot import module 'no_such_module_xyz'"]),
    (["--arch", "tests.cli.test_own_model:Nope"], ["has no 'Nope'", "OwnNet"]),
    (["--arch", "tests.cli.test_own_model:NOT_CALLABLE"], ["not a class or function"]),
    (["--arch", "tests.cli.test_own_model:not_a_module"], ["returned a dict, not a torch.nn.Module"]),
    (["--arch", ARCH, "--arch-kwargs", "[1, 2]"], ["must be a JSON object"]),
    (["--arch", ARCH, "--arch-kwargs", "{width: 8}"], ["not valid JSON"]),
    (["--arch", ARCH, "--arch-kwargs", '{"depth": 3}'], ["rejected --arch-kwargs", "depth"]),
    (["--arch", ARCH, "--arch-kwargs", '{"width": 16}'], ["do not fit", "shape mismatches", "body.0.weight"]),
    (["--arch", "cnn-small"], ["do not fit", "missing keys", "unexpected keys", "body.0.weight"]),
])
def test_bad_import_paths_are_one_line_and_write_nothing(own_file, tmp_path, capsys, args, needles):
    path, _ = own_file
    out = tmp_path / "never.pt"
    one_line_error(*cli(capsys, "prune", str(path), *args, "--no-normalize", "--dataset", "digits", "-m", "magnitude",
                        "--sparsity", "0.5", "-o", str(out), *TINY), *needles)
    assert list(tmp_path.iterdir()) == []
    one_line_error(*cli(capsys, "eval", str(path), *args, "--dataset", "digits", "--n", "5"), *needles)


@pytest.mark.slow
def test_pickled_module_prunes_and_its_output_reloads_with_trust_pickle(tmp_path, capsys):
    torch.manual_seed(1)
    path = tmp_path / "pickled.pt"
    torch.save(OwnNet(width=4), path)
    one_line_error(*cli(capsys, "prune", str(path), "-m", "magnitude", "--dataset", "digits", *TINY),
                   "--trust-pickle")
    code, out, err = cli(capsys, "prune", str(path), "--trust-pickle", "-m", "magnitude", "--sparsity", "0.75",
                         "--dataset", "digits", *TINY, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["output"] == str(tmp_path / "pickled.magnitude75.pt") and rep["reload_flags"] == ["--trust-pickle"]
    one_line_error(*cli(capsys, "eval", rep["output"], "--n", "10"), "--trust-pickle")
    code, out, err = cli(capsys, "inspect", rep["output"], "--trust-pickle", "--json")
    assert code == 0, err
    assert json.loads(out)["global_sparsity"] == pytest.approx(0.75, abs=0.02)
    code, out, err = cli(capsys, "eval", rep["output"], "--trust-pickle", "--attacks", "fgsm", "--n", "20", "--json")
    assert code == 0 and json.loads(out)["dataset"] == "digits", err  # the dataset the prune job recorded


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    """What `compressor train` writes: a checkpoint that records its dataset."""
    info = load_dataset("digits").info
    kwargs = {"num_classes": 10, "in_chans": 1, "mean": list(info.mean), "std": list(info.std), "width": 8,
              "hidden": 16}
    path = tmp_path_factory.mktemp("headline") / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=info.as_dict())
    return path


@pytest.mark.slow
def test_headline_prune_as_typed_default_sparsity_and_output_beside_the_input(trained_ckpt, capsys):
    code, out, err = cli(capsys, "prune", str(trained_ckpt), "--method", "tscnc", *TINY, "--score-samples", "64")
    assert code == 0, err
    first = trained_ckpt.with_name("model.tscnc90.pt")
    assert first.is_file()
    assert "sparsity target 0.9: the default" in out and f"output: {first}" in out
    code, out, err = cli(capsys, "prune", str(trained_ckpt), "--method", "tscnc", *TINY, "--score-samples", "64",
                         "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["output"] == str(trained_ckpt.with_name("model.tscnc90-2.pt")) and rep["sparsity_target"] == 0.9
    assert rep["sparsity_default"] and rep["output_default"] and rep["dataset"] == "digits"
    assert rep["normalization"]["source"] == "recorded in the checkpoint"
    assert load_model(first).checkpoint.compression[-1]["sparsity_target"] == 0.9


def test_prune_without_a_recorded_dataset_asks_for_one(tmp_path, capsys):
    kwargs = {"num_classes": 10, "in_chans": 1, "width": 4, "hidden": 8}
    path = tmp_path / "nodata.pt"
    save_checkpoint(path, create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs)
    one_line_error(*cli(capsys, "prune", str(path), "--method", "magnitude"), "records no dataset", "--dataset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata.pt"]
