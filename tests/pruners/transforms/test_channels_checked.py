"""`channels` on an option-A CIFAR ResNet (a parameter-free lambda shortcut that subsamples and zero-pads channels,
which Torch-Pruning cannot follow): the coupled layers are found before any training and kept at full width, the
model runs right after the transform, a transform that breaks the model is refused where it happens, and the prune
CLI reports channels removed, parameters and MACs (not "none: 0.00 % target")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.models.akamaster import CifarResNet, resnet20
from compressor.errors import CompressorError
from compressor.models import Normalized
from pruners.transforms import TransformContext, apply_transforms, parse_transforms
from compressor.analysis import is_prunable
from pruners.transforms.channels import Channels, channel_counts
from pruners.transforms.shortcuts import find_shortcuts, rewrite_shortcuts
from tests.conftest import cli

CKPT = Path("/work/shared/checkpoints/resnet20-12fca82f.th")
DATA = Path("/work/shared/data/cifar10_test.npz")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
RESIDUAL = ["conv1", "layer1.0.conv2", "layer2.0.conv2", "layer3.0.conv2"]  # the streams the lambda shortcut pads


def small_resnet(seed: int = 0) -> Normalized:
    """A one-block-per-stage option-A CIFAR ResNet behind the loader's `Normalized` wrapper (names 'model.*')."""
    torch.manual_seed(seed)
    return Normalized(CifarResNet(1), MEAN, STD).eval()


def test_option_a_resnet_keeps_the_coupled_layers_and_runs():
    model = small_resnet()
    x = torch.rand(4, 3, 32, 32)
    shape = model(x).shape
    entry, = apply_transforms(model, parse_transforms(["channels:0.5,shortcuts=keep"]), TransformContext((3, 32, 32)))
    assert model(x).shape == shape  # runs right after the transform
    assert entry["kept_coupled"] == RESIDUAL  # the user's names, without the loader's 'model.' prefix
    counts = channel_counts(model)
    assert [counts[f"model.{n}"] for n in RESIDUAL] == [16, 16, 32, 64]  # kept at full width
    assert [counts[f"model.layer{i}.0.conv1"] for i in (1, 2, 3)] == [8, 16, 32]  # the inner convs halved
    assert entry["channels_before"] - entry["channels_after"] == 8 + 16 + 32


def test_option_a_shortcuts_are_rewritten_with_the_same_output_and_the_residual_streams_thinned():
    model = small_resnet()
    x = torch.rand(4, 3, 32, 32)
    dense = model(x)
    before = {n: type(m).__name__ for n, m in model.named_modules() if n.endswith("shortcut")}
    assert set(find_shortcuts(model, (3, 32, 32))) == {"model.layer2.0.shortcut", "model.layer3.0.shortcut"}
    twin = small_resnet()
    assert set(rewrite_shortcuts(twin, (3, 32, 32))) == {"model.layer2.0.shortcut", "model.layer3.0.shortcut"}
    assert torch.equal(twin(x), dense)  # the frozen 0/1 convolution computes exactly the slice-and-pad
    assert not is_prunable(twin.model.layer2[0].shortcut) and not twin.model.layer2[0].shortcut.weight.requires_grad

    entry, = apply_transforms(model, parse_transforms(["channels:0.5"]), TransformContext((3, 32, 32)))
    assert model(x).shape == dense.shape and entry["kept_coupled"] == []
    assert entry["rewritten_shortcuts"] == ["layer2.0.shortcut", "layer3.0.shortcut"]  # the user's names
    counts = channel_counts(model)
    assert [counts[f"model.{n}"] for n in RESIDUAL] == [8, 8, 16, 32]  # the residual streams halved too
    assert "model.layer2.0.shortcut" not in counts  # not a prunable layer
    assert before["model.layer2.0.shortcut"] == "LambdaLayer"

    fresh = small_resnet(seed=1)  # a checkpoint's architecture: the rewrite and the removal rebuilt from the entry
    Channels.rebuild(fresh, json.loads(json.dumps(entry)))
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), model(x))


def test_a_shortcut_that_is_no_selection_is_left_alone():
    class Mix(torch.nn.Module):  # parameter-free, changes the channel count, but sums channels: not a selection
        def forward(self, x):
            return torch.cat([x, x[:, :1] + x[:, 1:2]], 1)

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), Mix(), torch.nn.Conv2d(5, 2, 1))
    assert find_shortcuts(net, (3, 8, 8)) == {}


def test_ignore_globs_take_the_users_own_names():
    model = small_resnet()
    t = parse_transforms(["channels:0.5,ignore=layer1.*|linear"])[0]
    assert t.ignored(model) == ["model.layer1.0.conv1", "model.layer1.0.conv2", "model.linear"]


def test_a_transform_that_breaks_the_model_is_refused_where_it_happens(monkeypatch):
    # without the coupling search, Torch-Pruning's removal leaves a model that fails (the reported
    # "mat1 and mat2 shapes cannot be multiplied"): the check right after the transform says so, in one line
    monkeypatch.setattr(Channels, "coupled", lambda self, model, shape, ignored: [])
    model = small_resnet()
    with pytest.raises(CompressorError) as err:
        apply_transforms(model, parse_transforms(["channels:0.5,shortcuts=keep"]), TransformContext((3, 32, 32)))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("`transforms` channels left a model that ") and "ignore=" in msg


def test_unfollowable_op_is_refused_in_one_line_naming_the_layers(monkeypatch):
    # a model where keeping the coupled layers would still not help: the refusal names them and the option
    model = small_resnet()
    calls = []

    def trial(self, model, shape, ignored, group_of=None):
        calls.append(group_of)
        return "gives output shape [2, 9] instead of [2, 10]"

    monkeypatch.setattr(Channels, "_trial", trial)
    with pytest.raises(CompressorError) as err:
        apply_transforms(model, parse_transforms(["channels:0.5,shortcuts=keep"]), TransformContext((3, 32, 32)))
    msg = str(err.value)
    assert "\n" not in msg and "ignore=GLOBS" in msg and "model." not in msg and "layer1.0.conv1" in msg
    assert channel_counts(model)["model.layer1.0.conv1"] == 16  # nothing removed


def _tiny_cifar(tmp_path: Path, n: int = 200) -> Path:
    with np.load(DATA) as d:
        x, y = d["x"][:n], d["y"][:n]
    path = tmp_path / "cifar_small.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not (CKPT.is_file() and DATA.is_file()), reason="the akamaster checkpoint or CIFAR-10 is absent")
def test_prune_cli_channels_on_akamaster_resnet20(tmp_path, capsys):
    out = tmp_path / "r20.pt"
    args = ["prune", str(CKPT), "--arch", "benchmarks.models.akamaster:resnet20", "--mean", ",".join(map(str, MEAN)),
            "--std", ",".join(map(str, STD)), "--dataset", f"npz:{_tiny_cifar(tmp_path)}", "--method", "none",
            "--transform", "channels:0.5", "--epochs-prune", "0", "--epochs-finetune", "1", "--steps", "1",
            "--val-n", "8", "--eval-n", "8", "--eval-attack", "fgsm", "--device", "cpu", "--batch-size", "16",
            "-o", str(out)]
    code, stdout, err = cli(capsys, *args)
    assert code == 0, err
    head = stdout.strip().splitlines()[0]
    assert "0.00%" not in head and "channels removed" in stdout
    rewritten, = [ln for ln in stdout.splitlines() if "shortcuts that subsample" in ln]
    assert "layer2.0.shortcut" in rewritten and "model." not in rewritten
    code, stdout, err = cli(capsys, *args[:-2], "-o", str(tmp_path / "r20b.pt"), "--json")
    assert code == 0, err
    s = json.loads(stdout)["structural"]
    assert s["macs"]["after"] < 0.3 * s["macs"]["before"] and s["parameters"]["after"] < s["parameters"]["before"]
    code, _, err = cli(capsys, "eval", str(out), *args[2:4], "--dataset", f"npz:{_tiny_cifar(tmp_path)}",
                       "--n", "8", "--attacks", "fgsm", "--device", "cpu")
    assert code == 0, err  # the rewritten, thinned model is rebuilt from the checkpoint

    keep = [a.replace("channels:0.5", "channels:0.5,shortcuts=keep") for a in args[:-2]]
    keep += ["-o", str(tmp_path / "r20c.pt")]
    code, stdout, err = cli(capsys, *keep)
    assert code == 0, err
    kept, = [ln for ln in stdout.splitlines() if "kept at full width" in ln]
    assert "layer2.0.conv2" in kept and "model." not in kept
    code, stdout, err = cli(capsys, *keep[:-2], "-o", str(tmp_path / "r20d.pt"), "--json")
    s = json.loads(stdout)["structural"]
    assert s["channels_removed"] == 8 * 3 + 16 * 3 + 32 * 3
    assert s["macs"]["after"] < 0.6 * s["macs"]["before"]
