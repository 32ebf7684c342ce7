"""`channels`: Torch-Pruning channel removal, its exact savings, fine-tuning, ONNX and rebuild from a checkpoint."""

import pytest
import torch

from compressor.errors import CompressorError
from compressor.flops import count_macs
from compressor.training import Trainer
from pruners import make_pruner
from pruners.transforms.channels import channel_counts

from .helpers import make, onnx_outputs, round_trip, transform

SHAPE = (1, 8, 8)


def params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_half_the_channels_exact_params_macs_onnx_and_round_trip(tmp_path):
    model, kw = make("cnn-small")
    assert (params(model), count_macs(model, SHAPE)) == (188234, 1920256)
    x = torch.rand(4, *SHAPE)
    (entry,) = transform(model, ["channels:0.5"], SHAPE)
    assert channel_counts(model) == {"features.0": 16, "features.2": 32, "features.5": 32, "classifier.1": 64,
                                     "classifier.3": 10}  # the output layer is kept
    # convs 1->16->32->32 (3x3, bias), FC 512->64->10
    assert params(model) == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (32 * 32 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)
    assert count_macs(model, SHAPE) == 64 * 16 * 9 + 64 * 32 * 16 * 9 + 16 * 32 * 32 * 9 + 512 * 64 + 64 * 10
    assert model(x).shape == (4, 10)
    out, _ = onnx_outputs(model, x, tmp_path / "c.onnx")
    assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-5)
    loaded = round_trip(tmp_path, model, "cnn-small", kw, [entry], SHAPE)
    assert channel_counts(loaded) == entry["channels"] and torch.equal(loaded(x), model(x))


def test_resnet_residual_groups_round_to_and_rebuild(tmp_path):
    model, kw = make("resnet18", in_chans=3)
    (entry,) = transform(model, ["channels:0.5,round_to=16"], (3, 32, 32))
    counts = channel_counts(model)
    assert counts["conv1"] == 32 and counts["layer4.1.conv2"] == 256 and counts["linear"] == 10
    assert all(c % 16 == 0 for n, c in counts.items() if n != "linear")
    x = torch.rand(2, 3, 32, 32)
    loaded = round_trip(tmp_path, model, "resnet18", kw, [entry], (3, 32, 32))
    assert torch.equal(loaded(x), model(x))


def test_finetunes_after_removal(digits, tiny_cfg):
    model, _ = make("cnn-small")
    transform(model, ["channels:0.5"], SHAPE)
    before = [p.detach().clone() for p in model.parameters()]
    result = Trainer(model, digits, tiny_cfg, quiet=True).fit()  # the optimiser is built on the new parameters
    assert result.history and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("importance", ["taylor", "pruner"])
def test_taylor_and_pruner_score_importance(digits, tiny_cfg, importance):
    model, _ = make("cnn-small")
    magnitude, _ = make("cnn-small")
    pruner = make_pruner("tscnc", sparsity=0.5, score_samples=32)
    (entry,) = transform(model, [f"channels:0.5,importance={importance},samples=32"], SHAPE, data=digits,
                         config=tiny_cfg, pruner=pruner)
    (mag,) = transform(magnitude, ["channels:0.5"], SHAPE)
    assert entry["importance"] == importance and entry["channels"] == mag["channels"]
    assert entry["history"] != mag["history"]  # another importance keeps other channels
    assert not any("parametrizations" in n for n, _ in model.named_modules())  # the temporary masks are gone
    pruner.attach(model)  # the pruner then works on the smaller model
    assert pruner.layers.shapes[0] == (16, 1, 3, 3)


def test_bad_ratio_order_and_model():
    model, _ = make("cnn-small")
    for bad in ("channels:0", "channels:1.5", "channels:-0.1"):
        with pytest.raises(CompressorError, match=r"ratio of channels removed must be in \(0, 1\)"):
            transform(model, [bad], SHAPE)
    with pytest.raises(CompressorError, match="impossible order: transforms apply as channels, then "
                                              "separable-linear, then nm"):
        transform(model, ["separable-linear", "channels:0.5"], SHAPE)
    with pytest.raises(CompressorError, match="has no option 'ratoi'"):
        transform(model, ["channels,ratoi=0.5"], SHAPE)
    transform(model, ["separable-linear"], SHAPE)
    with pytest.raises(CompressorError, match="remove channels first"):
        transform(model, ["channels:0.5"], SHAPE)
