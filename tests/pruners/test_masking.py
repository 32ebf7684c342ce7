import pytest
import torch
from torch import nn

from compressor.errors import CompressorError
from compressor.models import Normalized, create_model
from compressor.training import Trainer
from pruners import MaskedLayers, PrunerCallback, finalize, is_masked, make_pruner, prune_model
from pruners.base import Phase

from .conftest import AllKinds, cnn


def test_masked_weights_stay_zero_through_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = AllKinds()
    layers = MaskedLayers(model)
    layers.install()
    params = [p for p in model.parameters()]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-2)
    for _ in range(3):  # build up momentum on every weight first
        opt.zero_grad()
        sum(w.pow(2).sum() + w.sum() for w in layers.effective()).backward()
        opt.step()
    masks = [torch.rand(s) > 0.7 for s in layers.shapes]
    layers.set_masks(masks, opt)
    for _ in range(5):  # no callback in this loop: the parametrization alone keeps W ⊙ M at zero
        opt.zero_grad()
        sum(w.pow(2).sum() + w.sum() for w in layers.effective()).backward()
        opt.step()
    for w, s, m in zip(layers.effective(), layers.stored, masks):
        assert torch.count_nonzero(w.detach()[~m]) == 0
        assert torch.count_nonzero(s.detach()[~m]) == 0  # zeroed weights and momentum cannot come back


def test_pruned_weights_are_zero_after_training_steps(digits, tiny_cfg):
    model = cnn(digits)
    pruner = make_pruner("magnitude", sparsity=0.8)
    cb = PrunerCallback(pruner, Phase("finetune", 1, 0.05))
    trainer = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    masks = [m.clone().bool() for m in pruner.layers.masks]
    x, y = next(iter(trainer.loader))
    for _ in range(3):
        trainer.training_step(x, y)
    for w, s, m in zip(pruner.layers.effective(), pruner.layers.stored, masks):
        assert torch.count_nonzero(w.detach()[~m]) == 0 and torch.count_nonzero(s.detach()[~m]) == 0
        assert torch.count_nonzero(w.detach()[m]) == int(m.sum())  # the kept ones did train



def test_the_callback_hands_the_pruner_the_optimizer_once_it_is_built(digits, tiny_cfg):
    pruner = make_pruner("magnitude", sparsity=0.8)
    trainer = Trainer(cnn(digits), digits, tiny_cfg, [PrunerCallback(pruner, Phase("finetune", 1, 0.05))], quiet=True)
    trainer.start()
    assert trainer.optimizer is not None and pruner.optimizer is trainer.optimizer  # before any epoch begins


def test_check_then_attach_build_one_allocator_and_other_layers_a_new_one(digits):
    model = cnn(digits)
    pruner = make_pruner("magnitude", sparsity=0.8)
    checked = pruner.check(model)
    pruner.attach(model)
    assert pruner.allocator is checked
    other = cnn(digits)
    other.classifier[3] = nn.Linear(other.classifier[3].in_features, 5)
    assert pruner.check(other) is not checked

@pytest.mark.slow
def test_finalized_model_loads_strictly_into_the_plain_architecture(digits, tiny_cfg):
    model = cnn(digits)
    plain_keys = list(model.state_dict())
    prune_model(model, digits, make_pruner("hydra", sparsity=0.9), tiny_cfg, epochs_prune=1, epochs_finetune=0,
                quiet=True)
    assert not is_masked(model) and type(model.features[0]) is nn.Conv2d
    assert list(model.state_dict()) == plain_keys  # no masks, scores or parametrization keys left
    info = digits.info
    fresh = create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = digits.test.float_images()[:32]
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))
    assert torch.export.export(fresh.eval(), (x,)) is not None  # exportable once the masks are folded


def test_folding_gives_identical_outputs():
    torch.manual_seed(0)
    model = AllKinds()
    layers = MaskedLayers(model)
    layers.install()
    layers.set_masks([torch.rand(s) > 0.5 for s in layers.shapes])
    x = torch.randn(2, 3, 10)
    before = model.c1b(model.c1a(x))
    finalize(model)
    assert torch.equal(before, model.c1b(model.c1a(x)))


def test_a_model_without_prunable_layers_is_an_error():
    with pytest.raises(CompressorError, match="no prunable layers"):
        make_pruner("magnitude", sparsity=0.5).check(nn.Sequential(nn.Flatten(), nn.ReLU()))


def test_layers_are_named_as_the_users_model_spells_them():
    """Behind the loader's normalisation wrapper, reports and `layer_sparsity` globs use the user's own names."""
    inner = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    model = Normalized(inner, [0.5], [0.25])
    layers = MaskedLayers(model)
    assert layers.names == ["model.0", "model.2"] and layers.labels == ["0", "2"]
    pruner = make_pruner("magnitude", sparsity=0.5, layer_sparsity="2=0")
    pruner.prepare(model)
    pruner.update_masks()
    report = pruner.squash_mask()
    assert [r["layer"] for r in report["layers"]] == ["0", "2"]
    assert report["layers"][1]["kept"] == report["layers"][1]["params"]  # the glob in the user's name matched
