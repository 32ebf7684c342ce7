"""`separable-linear`: which layers, initialisation quality, checkpoint rebuild, ONNX, regulariser and bad input."""

import pytest
import torch
from torch import nn

from compressor.errors import CompressorError
from pruners.transforms import KroneckerLinear

from .helpers import make, onnx_outputs, round_trip, transform

SHAPE = (1, 8, 8)


def test_default_replaces_all_but_the_output_layer_and_round_trips(tmp_path):
    model, kw = make("cnn-small")
    x = torch.rand(3, *SHAPE)
    dense_w = model.classifier[1].weight.detach().clone()
    (entry,) = transform(model, ["separable-linear"], SHAPE)
    k = model.classifier[1]
    assert isinstance(k, KroneckerLinear) and isinstance(model.classifier[3], nn.Linear)
    assert entry["structural"] and entry["layers"]["classifier.1"]["factors"] == [[8, 32], [16, 32]]
    assert sum(p.numel() for p in k.parameters()) == 8 * 32 + 16 * 32 + 128
    # the initialisation is the nearest Kronecker product: its recorded error is the actual one
    err = float((dense_w - k.weight_matrix().detach()).norm() / dense_w.norm())
    assert entry["layers"]["classifier.1"]["init_rel_error"] == pytest.approx(err, rel=1e-4)
    loaded = round_trip(tmp_path, model, "cnn-small", kw, [entry], SHAPE)
    assert isinstance(loaded.classifier[1], KroneckerLinear)
    assert torch.equal(loaded(x), model(x))


@pytest.mark.slow
def test_vit_mlp_blocks_given_or_automatic_factors_and_onnx_as_matmuls(tmp_path):
    model, kw = make("vit_small_cifar", in_chans=3, depth=1, embed_dim=48, num_heads=3)
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(CompressorError, match="does not fit blocks.0.mlp.fc2 \\(48 x 96"):
        transform(model, ["separable-linear:blocks.*.mlp.*,factors=8x6*12x8"], (3, 32, 32))  # fits fc1 only
    (entry,) = transform(model, ["separable-linear:blocks.*.mlp.*"], (3, 32, 32))
    assert entry["layers"]["blocks.0.mlp.fc1"]["factors"] == [[8, 6], [12, 8]]  # 96 x 48, near-square
    assert entry["layers"]["blocks.0.mlp.fc2"]["factors"] == [[6, 8], [8, 12]]  # 48 x 96
    assert isinstance(model.blocks[0].attn.qkv, nn.Linear)  # only the globbed layers change
    out, ops = onnx_outputs(model, x, tmp_path / "vit.onnx")
    assert {"MatMul", "Reshape"} <= ops
    assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-4)
    loaded = round_trip(tmp_path, model, "vit_small_cifar", kw, [entry], (3, 32, 32))
    assert torch.equal(loaded(x), model(x))


def test_factorisation_that_does_not_divide_and_unmatched_glob():
    model, _ = make("cnn-small")
    with pytest.raises(CompressorError, match=r"factorisation 8x32\*16x30 does not fit classifier.1 \(128 x 1024"):
        transform(model, ["separable-linear:classifier.1,factors=8x32*16x30"], SHAPE)
    with pytest.raises(CompressorError, match="glob 'head.*' matches no Linear layer: the candidates are classifier.1"):
        transform(model, ["separable-linear:head.*"], SHAPE)
    with pytest.raises(CompressorError, match="not a valid factorisation"):
        transform(model, ["separable-linear:classifier.1,factors=8x32"], SHAPE)
    with pytest.raises(CompressorError, match="nu must be in"):
        transform(model, ["separable-linear,nu=2"], SHAPE)


def test_regulariser_sums_h_over_layers_through_the_transforms_callback():
    import inspect

    import pruners.base
    from pruners import make_pruner
    from pruners.transforms import TransformContext, apply_transforms, parse_transform
    from pruners.transforms.kronecker import condition_regularizer
    from pruners.transforms.separable import ConditionRegularizer

    model, _ = make("cnn-small")
    t = parse_transform("separable-linear:classifier.*,reg=0.5")
    options = t.pruner_options("magnitude", {"sparsity": 0.5})
    assert options == {"sparsity": 0.5, "cond_reg": 0.5, "cond_nu": 1e-3}  # recorded with the pruner's options
    pruner = make_pruner("magnitude", **options)
    (entry,) = apply_transforms(model, [t], TransformContext(SHAPE, pruner=pruner))
    assert set(entry["layers"]) == {"classifier.1", "classifier.3"} and entry["reg"] == 0.5
    (cb,) = t.callbacks(model)
    assert isinstance(cb, ConditionRegularizer)
    pruner.prepare(model)
    assert pruner.loss_term() is None and "cond_reg" not in inspect.getsource(pruners.base)  # not the pruner's
    loss = cb.extra_loss(None, torch.zeros(1), torch.zeros(1))
    layers = [model.classifier[1], model.classifier[3]]
    # ARLST's Eq. 20 per layer (its 1/T averages that layer's T = 2 factors), summed over the layers
    per_layer = [float(condition_regularizer([f.weight for f in m.factors], 1e-3).detach()) for m in layers]
    assert float(loss.detach()) == pytest.approx(0.5 * sum(per_layer), rel=1e-6)
    averaged = condition_regularizer([f.weight for m in layers for f in m.factors], 1e-3)
    assert float(loss.detach()) != pytest.approx(0.5 * float(averaged.detach()), rel=1e-3)  # not averaged over layers
    loss.backward()
    assert all(f.parametrizations.weight.original.grad is not None for m in layers for f in m.factors)
    with pytest.raises(CompressorError, match="disagree"):
        parse_transform("separable-linear,reg=0.5").pruner_options("magnitude", {"cond_reg": 0.1})


def test_the_paired_pruners_cond_reg_weights_h_and_zero_turns_it_off():
    from pruners import make_pruner
    from pruners.transforms import TransformContext, apply_transforms, parse_transform

    arlst = make_pruner("arlst", sparsity=0.5)  # the preset's default weight, no reg= on the transform
    model, _ = make("cnn-small")
    t = parse_transform("separable-linear")
    apply_transforms(model, [t], TransformContext(SHAPE, pruner=arlst))
    (cb,) = t.callbacks(model)
    assert (cb.weight, cb.nu) == (1e-3, 1e-3) and cb.term() is not None
    t = parse_transform("separable-linear")
    apply_transforms(make("cnn-small")[0], [t], TransformContext(SHAPE, pruner=make_pruner("magnitude", sparsity=0.5)))
    assert t.callbacks(model) == []  # cond_reg 0: no term


def test_arlst_prune_gives_the_losses_it_gave_when_the_pruner_added_h(digits):
    """Recorded when the pruner base class added h(A) (CPU, one thread); h at the preset's weight 1e-3 is ~5e-4 of
    these losses (without it: 2.3021038, 2.3022156), so a lost or doubled term fails."""
    from dataclasses import replace

    from compressor.models import create_model
    from compressor.training import TrainConfig
    from pruners import make_pruner, prune_model
    from pruners.transforms import TransformContext, apply_transforms, parse_transforms

    small = replace(digits, train=digits.train.head(256), val=digits.val.head(64))
    torch.manual_seed(0)
    model = create_model("cnn-small", 10, 1, digits.info.mean, digits.info.std)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.1, adv="trades", eps=0.1, steps=2, val_steps=2, val_n=64,
                      device="cpu", log_every=100)
    chosen = parse_transforms(["separable-linear"])
    pruner = make_pruner("arlst", sparsity=0.8)
    apply_transforms(model, chosen, TransformContext(tuple(digits.info.input_shape), pruner=pruner))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job = prune_model(model, small, pruner, cfg, epochs_prune=1, epochs_finetune=1, quiet=True, track=False,
                          callbacks=[cb for t in chosen for cb in t.callbacks(model)])
    finally:
        torch.set_num_threads(threads)
    assert [h["loss"] for h in job["history"]] == pytest.approx([2.3025965690612793, 2.302708625793457], rel=1e-5)
    assert job["sparsity"] == pytest.approx(0.8000069405885619, rel=1e-9)


@pytest.mark.slow
def test_cond_reg_applies_when_the_model_is_separable_already(tmp_path, monkeypatch):
    """Re-pruning an ARLST output (no separable-linear transform in the job) with --cond-reg still adds h(A)."""
    from compressor.training import TrainConfig
    from pruners import prune
    from pruners.transforms import ConditionRegularizer
    from tests.conftest import untrained_digits_checkpoint

    tiny = dict(dataset="digits", epochs_prune=1, epochs_finetune=1, eval_n=32, quiet=True,
                config=TrainConfig(batch_size=128, adv="pgd", eps=0.1, steps=1, val_steps=1, val_n=32))
    first = prune(untrained_digits_checkpoint(tmp_path), "arlst", tmp_path / "arlst.pt", options={"sparsity": 0.5},
                  **tiny)
    terms = []
    monkeypatch.setattr(ConditionRegularizer, "extra_loss", lambda self, *a: terms.append(self.term()) or terms[-1])
    prune(first.output, "magnitude", tmp_path / "again.pt", options={"sparsity": 0.6, "cond_reg": 0.5}, **tiny)
    assert terms and all(t is not None and t.item() > 0 for t in terms)
