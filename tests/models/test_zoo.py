"""Every zoo model: shapes, input normalisation first, finite outputs, gradients, sizes, export-relevant names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.errors import CompressorError, UnknownNameError
from compressor.models import Normalize, create_model, list_models
from compressor.models.vit import VisionTransformer, ViTShape
from compressor.registry import MODELS
from tests.conftest import SHARED

MEAN = [0.49, 0.48, 0.45]
STD = [0.25, 0.24, 0.26]
BIG = {"wrn_34_10"}  # only built, counted and run once on a batch of 1 (see test_wrn_34_10)
ALL = list_models()
SMALL = [n for n in ALL if n not in BIG]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_zoo_lists_the_builtin_models():
    expected = {"cnn-small", "vgg16_bn", "vgg16_bn_fc4096", "resnet18", "preact_resnet18",
                "wrn_28_4", "wrn_34_10", "vit_small_cifar"}
    assert expected <= set(ALL)
    for entry in MODELS.entries():
        assert entry.description, f"{entry.name} has no one-line description"
        assert "\n" not in entry.description


@pytest.mark.parametrize("name", ALL)
def test_first_child_is_normalize(name):
    model = create_model(name, num_classes=10, mean=MEAN, std=STD)
    child_name, child = next(iter(model.named_children()))
    assert child_name == "normalize" and isinstance(child, Normalize)
    assert torch.allclose(child.mean.flatten(), torch.tensor(MEAN))
    assert torch.allclose(child.std.flatten(), torch.tensor(STD))
    assert "normalize.mean" in model.state_dict() and "normalize.std" in model.state_dict()


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", SMALL)
def test_cifar_output_shape_and_finite(name, num_classes):
    model = create_model(name, num_classes=num_classes, mean=MEAN, std=STD)
    x = torch.rand(2, 3, 32, 32)
    model.train()
    assert model(x).shape == (2, num_classes)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, num_classes)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", SMALL)
def test_normalize_is_applied_first(name):
    """Same weights: model(mean m, std s) on x == model(mean 0, std 1) on (x - m) / s."""
    normed = create_model(name, num_classes=10, mean=MEAN, std=STD).eval()
    plain = create_model(name, num_classes=10).eval()
    weights = {k: v for k, v in normed.state_dict().items() if not k.startswith("normalize.")}
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    assert set(missing) == {"normalize.mean", "normalize.std"} and not unexpected
    x = torch.rand(2, 3, 32, 32)
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        y = normed(x)
        y_manual = plain((x - m) / s)
        y_raw = plain(x)
    scale = y.abs().max()
    assert torch.allclose(y, y_manual, rtol=1e-4, atol=1e-5 * scale)
    # ... and the normalisation really changes the output.
    assert (y - y_raw).abs().max() > 1e-2 * scale


@pytest.mark.parametrize("name", SMALL)
def test_input_gradients_flow(name):
    """Attacks need d(loss)/d(input): it must exist, be finite and non-zero."""
    model = create_model(name, num_classes=10, mean=MEAN, std=STD).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([1, 7]))
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [8, 28])
def test_cnn_small_on_single_channel_inputs(size):
    model = create_model("cnn-small", num_classes=10, in_chans=1, mean=[0.5], std=[0.5]).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 1, size, size))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


def test_vit_on_8x8_digits():
    model = create_model("vit_small_cifar", num_classes=10, in_chans=1, mean=[0.5], std=[0.5], img_size=8)
    assert model.pos_embed.shape == (1, 1 + 4, 192)  # 4 patches of 4x4 plus the cls token
    with torch.no_grad():
        y = model.eval()(torch.rand(2, 1, 8, 8))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="img_size"):
        model(torch.rand(2, 1, 16, 16))


def test_vit_structure_and_arguments():
    model = create_model("vit_small_cifar", num_classes=10, depth=2, embed_dim=64, num_heads=4, mlp_ratio=3)
    names = dict(model.named_modules())
    assert len(model.blocks) == 2
    for i in range(2):
        fc1, fc2 = names[f"blocks.{i}.mlp.fc1"], names[f"blocks.{i}.mlp.fc2"]
        assert isinstance(fc1, nn.Linear) and (fc1.in_features, fc1.out_features) == (64, 192)
        assert isinstance(fc2, nn.Linear) and (fc2.in_features, fc2.out_features) == (192, 64)
        assert isinstance(names[f"blocks.{i}.norm1"], nn.LayerNorm)
        assert isinstance(names[f"blocks.{i}.norm2"], nn.LayerNorm)
        assert f"blocks.{i}.attn" in names
    assert isinstance(model.norm, nn.LayerNorm) and model.head.out_features == 10
    default = create_model("vit_small_cifar", num_classes=10)
    assert len(default.blocks) == 6 and default.pos_embed.shape == (1, 65, 192)
    assert default.blocks[0].mlp.fc1.out_features == 384
    # the shape as one value, or its fields as keywords (what checkpoints record in arch_kwargs), set over it
    shaped = VisionTransformer(10, shape=ViTShape(depth=2, embed_dim=64, num_heads=4, mlp_ratio=3))
    overridden = VisionTransformer(10, shape=ViTShape(depth=5, embed_dim=64, num_heads=4, mlp_ratio=3), depth=2)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    for built in (shaped, overridden):
        assert {k: v.shape for k, v in built.state_dict().items()} == expected


def test_vgg16_bn_layout():
    for num_classes in (10, 100):
        model = create_model("vgg16_bn", num_classes=num_classes)
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        bns = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
        assert len(convs) == 13 and len(bns) == 13
        assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
        assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
        assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
        c = num_classes
        assert _params(model.classifier) == 2048 * 256 + 256 + 256 * 256 + 256 + 256 * c + c
        # HYDRA checkpoint keys: features.<i>, classifier.0/2/4
        keys = model.state_dict().keys()
        assert {"features.0.weight", "features.1.running_mean", "classifier.0.weight",
                "classifier.2.weight", "classifier.4.bias"} <= set(keys)
    wide = create_model("vgg16_bn_fc4096", num_classes=10)
    assert _params(wide.classifier) == 2048 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10
    assert _params(wide.features) == _params(create_model("vgg16_bn").features)


def test_resnet18_sizes_and_names():
    model = create_model("resnet18", num_classes=10)
    assert _params(model) == 11_173_962
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert model.linear.in_features == 512
    proj = model.layer2[0].shortcut
    assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1) and isinstance(proj[1], nn.BatchNorm2d)
    preact = create_model("preact_resnet18", num_classes=10)
    assert isinstance(preact.bn, nn.BatchNorm2d) and preact.bn.num_features == 512
    assert abs(_params(preact) - 11.17e6) < 0.01e6


def test_wrn_28_4_size():
    model = create_model("wrn_28_4", num_classes=10)
    assert abs(_params(model) - 5.85e6) < 0.01e6
    assert len(model.block1.layer) == 4  # (28 - 4) / 6
    assert model.fc.in_features == 256


def test_wrn_34_10():
    model = create_model("wrn_34_10", num_classes=10, mean=MEAN, std=STD).eval()
    assert abs(_params(model) - 46.16e6) < 0.01e6
    assert len(model.block1.layer) == 5 and model.fc.in_features == 640
    assert isinstance(next(iter(model.children())), Normalize)
    with torch.no_grad():
        y = model(torch.rand(1, 3, 32, 32))
    assert y.shape == (1, 10) and torch.isfinite(y).all()


def test_wide_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn_28_4", depth=27)


def test_torchvision_resnet18():
    assert "tv:resnet18" not in list_models()  # resolved, not listed
    assert "tv:resnet18" in MODELS
    model = create_model("tv:resnet18", num_classes=10, mean=MEAN, std=STD).eval()
    names = [n for n, _ in model.named_children()]
    assert names == ["normalize", "model"] and isinstance(model.normalize, Normalize)
    assert model.model.fc.out_features == 10
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
        y_manual = model.model((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert torch.allclose(y, y_manual, rtol=1e-4, atol=1e-6)


def test_torchvision_unknown_name_suggests():
    assert "tv:resnet1800" not in MODELS
    with pytest.raises(UnknownNameError, match="did you mean 'tv:resnet18'"):
        create_model("tv:resnet1800")
    with pytest.raises(UnknownNameError, match="did you mean"):
        create_model("resnet1800")  # a zoo typo suggests the zoo name


def test_torchvision_rejects_other_channels_and_weights():
    with pytest.raises(CompressorError, match="3 input channels") as info:
        create_model("tv:resnet18", in_chans=1)
    assert "\n" not in str(info.value)
    with pytest.raises(CompressorError, match="weights"):
        create_model("tv:resnet18", weights="DEFAULT")


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn", "wrn_28_4", "vit_small_cifar"])
def test_bad_kwargs_are_one_line_errors(name):
    with pytest.raises(CompressorError, match="bad arguments"):
        create_model(name, no_such_argument=1)


def test_convnet_mnist_reads_the_upstream_sequential_layout(tmp_path):
    from compressor.checkpoint import load_model

    upstream = nn.Sequential(nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1),
                             nn.ReLU(), nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))
    torch.save(upstream.state_dict(), tmp_path / "upstream.pth")
    loaded = load_model(tmp_path / "upstream.pth", arch="convnet-mnist", arch_kwargs={"in_chans": 1}, no_normalize=True)
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(loaded.model.eval()(x), upstream(x), atol=1e-6)
    assert set(loaded.checkpoint.state_dict) == set(create_model("convnet-mnist", in_chans=1).state_dict())


@pytest.mark.skipif(not (SHARED / "checkpoints" / "fastadv_mnist_pgd_madry.pth").is_file()
                    or not (SHARED / "data" / "mnist_test.npz").is_file(), reason="../shared checkpoints/data absent")
def test_convnet_mnist_loads_the_released_robust_mnist_model():
    import numpy as np

    from compressor.checkpoint import load_model

    model = load_model(SHARED / "checkpoints" / "fastadv_mnist_pgd_madry.pth", arch="convnet-mnist",
                       arch_kwargs={"in_chans": 1}, no_normalize=True).model.eval()
    data = np.load(SHARED / "data" / "mnist_test.npz")
    x = torch.from_numpy(data["x"][:500]).float() / 255
    with torch.no_grad():
        acc = (model(x).argmax(1) == torch.from_numpy(data["y"][:500])).float().mean().item()
    assert acc > 0.97  # its authors report 98.99 % on the full test set
