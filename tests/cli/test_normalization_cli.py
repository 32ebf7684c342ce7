"""The CLI never invents an input normalisation for a state dict and records the one used; --split all evaluates
a whole dataset file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compressor.models import create_model
from tests.conftest import cli

KW = {"num_classes": 10, "in_chans": 1, "width": 4, "hidden": 8}
TINY_KW = json.dumps({"width": 4, "hidden": 8})


@pytest.fixture(scope="module")
def raw_state_dict(tmp_path_factory):
    """A state dict without normalisation buffers, as a paper's repository would release it."""
    torch.manual_seed(0)
    model = create_model("cnn-small", **KW)
    path = tmp_path_factory.mktemp("norm") / "released.pth"
    torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if "normalize" not in k}}, path)
    return path


def test_state_dict_without_normalisation_is_refused_in_one_line(raw_state_dict, tmp_path, capsys):
    for cmd in (["eval", "--attacks", "fgsm"], ["inspect"], ["export", "-f", "onnx", "-o", str(tmp_path / "m.onnx")],
                ["prune", "-m", "magnitude", "-o", str(tmp_path / "p.pt")]):
        code, out, err = cli(capsys, cmd[0], str(raw_state_dict), *cmd[1:], "--arch", "cnn-small", "--arch-kwargs", TINY_KW, "--dataset",
                             "digits")
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (cmd, err)
        assert "holds no input normalisation" in err and "--mean" in err and "--no-normalize" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, expected", [
    (["--no-normalize"], {"mean": [0.0], "std": [1.0], "source": "--no-normalize"}),
    (["--mean", "0.5", "--std", "0.25"], {"mean": [0.5], "std": [0.25], "source": "--mean/--std"}),
])
def test_the_normalisation_used_is_in_the_report(raw_state_dict, capsys, flags, expected):
    code, out, err = cli(capsys, "eval", str(raw_state_dict), "--arch", "cnn-small", "--arch-kwargs", TINY_KW, "--dataset", "digits",
                         "--attacks", "fgsm", "--n", "20", *flags, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["normalization"] == expected and res["protocol"]["normalization"] == expected
    code, out, err = cli(capsys, "eval", str(raw_state_dict), "--arch", "cnn-small", "--arch-kwargs", TINY_KW, "--dataset", "digits",
                         "--attacks", "fgsm", "--n", "20", *flags)
    assert code == 0 and f"input normalisation: mean {expected['mean']} std {expected['std']}" in out, err


def test_split_all_evaluates_the_whole_file(raw_state_dict, tmp_path, digits, capsys):
    x = (digits.test.float_images()[:150] * 255).round().to(torch.uint8).numpy()
    np.savez(tmp_path / "mine.npz", x=x, y=digits.test.y[:150].numpy())
    base = ["eval", str(raw_state_dict), "--arch", "cnn-small", "--arch-kwargs", TINY_KW, "--no-normalize", "--dataset",
            f"npz:{tmp_path / 'mine.npz'}", "--attacks", "fgsm"]
    code, out, err = cli(capsys, *base, "--split", "all", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 150 and res["split"] == "all"
    code, out, err = cli(capsys, *base, "--n", "1000", "--json")
    assert code == 0, err
    note = json.loads(out)["note"]
    assert "30 of the dataset's 150 images" in note and "--split all" in note
