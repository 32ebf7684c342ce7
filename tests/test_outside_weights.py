"""State dicts as users and papers' repositories save them load unchanged (bare, under state_dict / model / net,
with module. / model. prefixes, beside extra entries); mismatches name the keys; normalisation is never invented;
released third-party checkpoints in ../shared give their authors' accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.checkpoint import load_model, save_checkpoint
from compressor.errors import CompressorError
from compressor.models import create_model
from tests.conftest import SHARED

KW = {"num_classes": 10, "in_chans": 1, "width": 4, "hidden": 8}


def _weights():
    torch.manual_seed(0)
    model = create_model("cnn-small", **KW).eval()
    return model, {k: v for k, v in model.state_dict().items() if "normalize" not in k}


LAYOUTS = {
    "bare": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "best_prec1": 91.7},
    "model": lambda sd: {"model": sd, "optimizer": {"lr": 0.1}, "epoch": 3},
    "net": lambda sd: {"net": sd, "acc": 0.9},
    "module_prefix": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    "lightning": lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1},
    "extra_keys": lambda sd: {**sd, "epoch": 7, "arch": "cnn"},
    "compiled_ddp": lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_third_party_layouts_load(tmp_path, layout):
    model, sd = _weights()
    torch.save(LAYOUTS[layout](sd), tmp_path / "w.pth")
    loaded = load_model(tmp_path / "w.pth", arch="cnn-small", arch_kwargs=KW, no_normalize=True)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model(x))
    assert loaded.normalization == {"mean": [0.0], "std": [1.0], "source": "--no-normalize"}


def test_mismatches_name_the_first_keys(tmp_path):
    _, sd = _weights()
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(CompressorError) as err:
        load_model(tmp_path / "w.pth", arch="cnn-small", arch_kwargs={**KW, "num_classes": 7}, no_normalize=True)
    assert "2 shape mismatches (classifier.3.weight: file (10, 8) vs model (7, 8), classifier.3.bias" in str(err.value)
    with pytest.raises(CompressorError) as err:
        load_model(tmp_path / "w.pth", arch="convnet-mnist", arch_kwargs={"in_chans": 1}, no_normalize=True)
    msg = str(err.value)
    assert "2 unexpected keys (features.5.weight, features.5.bias)" in msg
    assert "7 shape mismatches (features.0.weight: file (4, 1, 3, 3) vs model (16, 1, 4, 4)" in msg
    torch.save({k: v for k, v in sd.items() if not k.startswith(("features.5", "classifier.1"))}, tmp_path / "w.pth")
    with pytest.raises(CompressorError, match=r"4 missing keys \(features.5.weight, features.5.bias, classifier.1"):
        load_model(tmp_path / "w.pth", arch="cnn-small", arch_kwargs=KW, no_normalize=True)


def test_normalisation_is_never_invented(tmp_path):
    model, sd = _weights()
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(CompressorError, match="holds no input normalisation.*`mean`.*`no_normalize`"):
        load_model(tmp_path / "w.pth", arch="cnn-small", arch_kwargs=KW)
    stated = load_model(tmp_path / "w.pth", arch="cnn-small", arch_kwargs=KW, mean=[0.5], std=[0.2])
    assert stated.normalization == {"mean": [0.5], "std": [0.2], "source": "--mean/--std"}
    assert stated.checkpoint.arch_kwargs["mean"] == [0.5]  # the checkpoint records what was used
    # a file that holds its normalisation uses it, and contradicting flags are refused
    full = create_model("cnn-small", **KW, mean=[0.3], std=[0.4]).state_dict()
    torch.save(full, tmp_path / "full.pth")
    own = load_model(tmp_path / "full.pth", arch="cnn-small", arch_kwargs=KW)
    assert own.normalization == {"mean": [0.3], "std": [0.4], "source": "the file"}
    with pytest.raises(CompressorError, match="holds its own input normalisation"):
        load_model(tmp_path / "full.pth", arch="cnn-small", arch_kwargs=KW, no_normalize=True)
    with pytest.raises(CompressorError, match="together"):
        load_model(tmp_path / "w.pth", arch="cnn-small", arch_kwargs=KW, mean=[0.5])


def test_recorded_import_path_needs_the_same_arch_or_trust_code(tmp_path):
    from tests.cli.test_own_model import ARCH, OwnNet

    path = tmp_path / "own.pt"
    save_checkpoint(path, OwnNet(width=4), arch=ARCH, arch_kwargs={"kwargs": {"width": 4}})
    with pytest.raises(CompressorError, match=f"pass `arch` {ARCH} \\(or `trust_code`\\)"):
        load_model(path)
    with pytest.raises(CompressorError, match="written for `arch`"):
        load_model(path, arch="tests.cli.test_own_model:not_a_module")
    assert load_model(path, arch=ARCH).checkpoint.arch == ARCH
    assert load_model(path, trust_code=True).checkpoint.arch_kwargs == {"kwargs": {"width": 4}}


def test_timm_models_by_name(tmp_path):
    pytest.importorskip("timm")
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "t.pth")
    loaded = load_model(tmp_path / "t.pth", arch="timm:test_resnet", arch_kwargs={"num_classes": 10, "in_chans": 1},
                        no_normalize=True)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.model.eval()(x), net(x), atol=1e-6)
    assert loaded.checkpoint.arch == "timm:test_resnet"
    with pytest.raises(CompressorError, match="unknown timm model 'timm:test_resnt': did you mean 'timm:test_resnet'"):
        load_model(tmp_path / "t.pth", arch="timm:test_resnt", no_normalize=True)


def _accuracy(model, npz: str, n: int) -> float:
    data = np.load(SHARED / "data" / npz)
    x = torch.from_numpy(data["x"][:n]).float() / 255
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == torch.from_numpy(data["y"][:n])).float().mean().item()


@pytest.mark.skipif(not (SHARED / "checkpoints" / "convexadv_mnist.pth").is_file()
                    or not (SHARED / "data" / "mnist_test.npz").is_file(), reason="../shared checkpoints/data absent")
@pytest.mark.parametrize("name, reported", [("convexadv_mnist.pth", 0.982), ("fastadv_mnist_pgd_madry.pth", 0.9899)])
def test_released_mnist_state_dicts(name, reported):
    path = SHARED / "checkpoints" / name
    with pytest.raises(CompressorError, match="holds no input normalisation"):
        load_model(path, arch="convnet-mnist", arch_kwargs={"in_chans": 1})
    loaded = load_model(path, arch="convnet-mnist", arch_kwargs={"in_chans": 1}, no_normalize=True)
    assert _accuracy(loaded.model, "mnist_test.npz", 500) > reported - 0.03  # authors: full test set


@pytest.mark.skipif(not (SHARED / "checkpoints" / "abcrown_resnet4b_adv2px.pth").is_file()
                    or not (SHARED / "data" / "cifar10_test.npz").is_file(), reason="../shared checkpoints/data absent")
def test_released_abcrown_resnet4b_by_import_path():
    pytest.importorskip("benchmarks.models.abcrown")  # the architecture, written from the upstream facts
    arch = "benchmarks.models.abcrown:resnet4b"
    path = SHARED / "checkpoints" / "abcrown_resnet4b_adv2px.pth"
    with pytest.raises(CompressorError, match="holds no input normalisation"):  # its own Normalize, not in the file
        load_model(path, arch=arch)
    loaded = load_model(path, arch=arch, mean=[0.4914, 0.4822, 0.4465], std=[0.2471, 0.2435, 0.2616])
    assert _accuracy(loaded.model, "cifar10_test.npz", 500) == pytest.approx(0.772, abs=0.06)  # authors: 77.20 %
