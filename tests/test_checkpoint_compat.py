"""Checkpoints as people have them: files from before BatchNorm's num_batches_tracked load as PyTorch loads them,
and key mismatches are named as the user's own model spells its keys (not behind our normalisation wrapper)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.models.akamaster import resnet20
from compressor.checkpoint import load_model
from compressor.errors import CompressorError

from .conftest import SHARED, cli

ARCH = "benchmarks.models.akamaster:resnet20"
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # ../shared/checkpoints/README.md
AKAMASTER = SHARED / "checkpoints" / "resnet20-12fca82f.th"
CIFAR = SHARED / "data" / "cifar10_test.npz"


def _old_file(path, drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A ResNet-20 saved as the akamaster files are: {'state_dict', 'best_prec1'}, `module.` keys, no
    num_batches_tracked; returns the saved (unprefixed) weights."""
    torch.manual_seed(0)
    model = resnet20()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked") and k not in drop}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_prec1": 91.7}, path)
    return sd


def test_missing_num_batches_tracked_loads_as_pytorch_does(tmp_path):
    sd = _old_file(tmp_path / "old.th")
    reference = resnet20()
    reference.load_state_dict(sd, strict=True)  # PyTorch's own strict load accepts such a file
    loaded = load_model(tmp_path / "old.th", arch=ARCH, **NORM)
    ours = loaded.model.model.state_dict()
    assert ours.keys() == reference.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in reference.state_dict().items())  # num_batches_tracked 0 in both


def test_zoo_batchnorm_model_without_num_batches_tracked_loads(tmp_path):
    from compressor.models import create_model

    model = create_model("resnet18", num_classes=10, in_chans=3, mean=NORM["mean"], std=NORM["std"])
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, tmp_path / "r.pt")
    assert load_model(tmp_path / "r.pt", arch="resnet18", arch_kwargs={"num_classes": 10, "in_chans": 3}).model


def test_mismatch_names_the_users_keys_not_the_wrapper(tmp_path):
    _old_file(tmp_path / "old.th", drop=("linear.weight", "layer3.2.bn2.running_var"))
    with pytest.raises(CompressorError) as exc:
        load_model(tmp_path / "old.th", arch=ARCH, **NORM)
    msg = str(exc.value)
    assert "2 missing keys (layer3.2.bn2.running_var, linear.weight)" in msg, msg
    assert "model." not in msg and "num_batches_tracked" not in msg, msg


def test_unexpected_and_shape_keys_are_named_as_the_user_wrote_them(tmp_path):
    sd = _old_file(tmp_path / "old.th")
    sd["extra.weight"] = torch.zeros(1)
    sd["linear.bias"] = torch.zeros(7)
    torch.save({"state_dict": sd}, tmp_path / "odd.th")
    with pytest.raises(CompressorError) as exc:
        load_model(tmp_path / "odd.th", arch=ARCH, **NORM)
    msg = str(exc.value)
    assert "1 unexpected keys (extra.weight)" in msg and "linear.bias: file (7,) vs model (10,)" in msg, msg
    assert "model." not in msg, msg


def test_eval_cli_loads_an_old_file(tmp_path, capsys):
    import numpy as np

    _old_file(tmp_path / "old.th")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.integers(0, 256, (200, 3, 32, 32), dtype=np.uint8), y=np.arange(200) % 10)
    code, out, err = cli(capsys, "eval", str(tmp_path / "old.th"), "--arch", ARCH, "--mean", "0.485,0.456,0.406",
                         "--std", "0.229,0.224,0.225", "--dataset", f"npz:{tmp_path / 'c.npz'}", "--attacks", "fgsm",
                         "--n", "8", "--json")
    assert code == 0, err


@pytest.mark.skipif(not (AKAMASTER.is_file() and CIFAR.is_file()), reason="../shared checkpoints/data absent")
def test_eval_cli_of_the_akamaster_release(tmp_path, capsys):
    import json

    import numpy as np

    data = np.load(CIFAR)
    np.savez(tmp_path / "c10.npz", x=data["x"][:500], y=data["y"][:500])
    code, out, err = cli(capsys, "eval", str(AKAMASTER), "--arch", ARCH, "--mean", "0.485,0.456,0.406", "--std",
                         "0.229,0.224,0.225", "--dataset", f"npz:{tmp_path / 'c10.npz'}", "--attacks", "fgsm",
                         "--n", "100", "--json")
    assert code == 0, err
    assert json.loads(out)["clean_accuracy"] > 0.8  # the release reports 91.7 %
