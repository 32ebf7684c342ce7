"""`compressor prune --transform` end to end on digits (a pruner paired with transforms, and --method none),
`compressor inspect` of the result, and bad transform input (one line, exit code 2)."""

import json

import pytest
import torch

from compressor.checkpoint import load_model
from pruners.patterns import is_nm
from tests.cli.test_prune_cli import ckpt  # noqa: F401  (the dense cnn-small checkpoint fixture)
from tests.conftest import cli

FAST = ["--steps", "1", "--val-n", "32", "--eval-n", "20", "--eval-attack", "fgsm", "--device", "cpu"]


@pytest.mark.slow
def test_tscnc_with_channels_and_separable_end_to_end(ckpt, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "t.pt"
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "tscnc", "--sparsity", "0.5", "--score-samples", "32",
                            "--rounds", "1",
                            "-t", "channels:0.5", "-t", "separable-linear,reg=1e-3", "-o", str(out),
                            "--epochs-prune", "1", "--epochs-finetune", "1", *FAST, "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    assert [t["name"] for t in rep["transforms"]] == ["channels", "separable-linear"]
    size = rep["size"]["change"]
    assert size["parameters"]["before"] == 188234 and size["macs"]["before"] == 1920256
    assert size["parameters"]["reduction"] > 10 and size["macs"]["reduction"] > 3.9
    assert size["nonzeros"]["after"] < size["parameters"]["after"]  # the pruner's masks on the smaller model
    layers = {r["layer"]: r for r in rep["layers"]}
    assert layers["classifier.1.factors.0"]["kappa_before"] is None and layers["features.0"]["shape"] == [16, 1, 3, 3]
    loaded = load_model(out)  # rebuilt from the recorded transforms, loaded strictly, no pickles
    assert [e["name"] for e in loaded.checkpoint.compression][1:] == ["channels", "separable-linear", "tscnc"]
    assert loaded.model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    code, stdout, err = cli(capsys, "inspect", str(out), "--no-svd", "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["macs"] == size["macs"]["after"]
    shapes = {r["layer"]: r["shape"] for r in info["cost_layers"]}
    assert shapes["classifier.1"] == "8x16 ⊗ 8x32"  # 64 x 512: I = 8*8, K = 16*32


@pytest.mark.slow
def test_method_none_transforms_alone(ckpt, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "n.pt"
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "none",
                            "-t", "channels:0.25,importance=taylor,samples=32", "-t", "nm", "-o", str(out), "--epochs-prune", "0", "--epochs-finetune", "1", *FAST)
    assert code == 0, err
    assert "size (MACs: one input)" in stdout and "transform channels: ratio=0.25, importance=taylor" in stdout
    model = load_model(out).model
    assert model.features[2].weight.shape == (48, 24, 3, 3) and is_nm(model.features[2].weight, 2, 4)


@pytest.mark.parametrize("args, message", [
    (["-t", "separable-linear:classifier.1,factors=8x32*16x30"], "factorisation 8x32*16x30 does not fit classifier.1"),
    (["-t", "separable-linear:head.*"], "glob 'head.*' matches no Linear layer"),
    (["-t", "channels:1.5"], "ratio of channels removed must be in (0, 1)"),
    (["-t", "nm", "-t", "channels:0.5"], "--transform nm before --transform channels is an impossible order"),
    (["-t", "chanels:0.5"], "unknown transform 'chanels': did you mean 'channels'?"),
])
def test_bad_transform_input_is_one_line_exit_2(ckpt, tmp_path, capsys, args, message):  # noqa: F811
    out = tmp_path / "bad.pt"
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "magnitude", "--sparsity", "0.5", *args, "-o", str(out),
                            *FAST)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
