from dataclasses import replace

import pytest
import torch
from torch.nn.utils import parametrize

from compressor.training import Trainer
from pruners import PrunerCallback, make_pruner
from pruners.allocation import keep_count, top_mask
from pruners.base import Phase

from .conftest import cnn


def _prune_phase(digits, cfg, sparsity=0.9):
    model = cnn(digits)
    pruner = make_pruner("hydra", sparsity=sparsity)
    cb = PrunerCallback(pruner, Phase("prune", 2, 0.1))
    trainer = Trainer(model, digits, cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    return model, pruner, trainer


def test_first_mask_equals_per_layer_magnitude_pruning(digits, tiny_cfg):
    _, pruner, _ = _prune_phase(digits, tiny_cfg)
    for w, m in zip(pruner.layers.stored, pruner.layers.masks):
        expected = top_mask(w.detach().abs(), keep_count(w.numel(), 0.9))
        assert torch.equal(m.bool(), expected)


def test_straight_through_gradient_reaches_the_scores(digits, tiny_cfg):
    model, pruner, trainer = _prune_phase(digits, tiny_cfg)
    x, y = next(iter(trainer.loader))
    with parametrize.cached():  # the forward uses exactly these effective weights
        effective = [m.weight for m in pruner.layers.modules]
        for w in effective:
            w.retain_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for w_eff, w, s in zip(effective, pruner.layers.stored, pruner.layers.scores):
        assert s.grad is not None and torch.count_nonzero(s.grad) > 0
        # dL/dS = sign(S) * W * dL/dW_eff, also where the mask is 0 (that is what lets weights come back)
        torch.testing.assert_close(s.grad, torch.sign(s.detach()) * w.detach() * w_eff.grad)
        assert w.grad is None  # weights are frozen in the prune phase


def test_prune_phase_trains_scores_only_then_finetune_trains_weights(digits, tiny_cfg):
    model, pruner, trainer = _prune_phase(digits, replace(tiny_cfg, lr=5.0))  # an untrained model: tiny gradients
    weights = [w.detach().clone() for w in pruner.layers.stored]
    first = [m.detach().clone() for m in pruner.layers.masks]
    x, y = next(iter(trainer.loader))
    for _ in range(3):
        trainer.training_step(x, y)
    assert all(torch.equal(a, b) for a, b in zip(weights, pruner.layers.stored))
    assert any(not torch.equal(a, b) for a, b in zip(first, pruner.layers.masks))  # the scores moved the masks
    cb = PrunerCallback(pruner, Phase("finetune", 1, 0.01))
    ft = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    ft.start()
    assert not pruner.layers.scores and all(p.requires_grad for p in model.parameters())
    masks = [m.clone().bool() for m in pruner.layers.masks]
    ft.training_step(x, y)
    for w, m in zip(pruner.layers.stored, masks):
        assert torch.count_nonzero(w.detach()[~m]) == 0


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_batchnorm_trains_in_the_score_search_unless_freeze_bn(digits, tiny_cfg, freeze_bn):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    pruner = make_pruner("hydra", sparsity=0.5, freeze_bn=freeze_bn)
    cb = PrunerCallback(pruner, Phase("prune", 1, 0.1))
    trainer = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    bn = [p.detach().clone() for p in model[1].parameters()]
    conv_bias = model[0].bias.detach().clone()
    x, y = next(iter(trainer.loader))
    trainer.training_step(x, y)
    assert torch.equal(conv_bias, model[0].bias)  # conv/linear weights and biases are frozen either way
    moved = any(not torch.equal(a, b) for a, b in zip(bn, model[1].parameters()))
    assert moved is not freeze_bn


def test_scores_move_the_masks_at_the_reference_settings(digits, standard_model):
    """lr 0.1, weight decay 1e-4 on the scores, per-layer TopK: a few steps of the search on a trained model change
    the masks; the decay alone cannot (it scales each layer's scores by one factor), only the gradient reorders."""
    import copy

    from compressor.training import TrainConfig

    pruner = make_pruner("hydra", sparsity=0.9)
    assert pruner.config.allocation == "layer" and pruner.default_lr[0] == 0.1 and pruner.default_weight_decay == 1e-4
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.1, adv="trades", eps=0.1, steps=2, val_steps=2, val_n=64,
                      device="cpu", log_every=100, weight_decay=pruner.default_weight_decay)
    model = copy.deepcopy(standard_model)
    cb = PrunerCallback(pruner, Phase("prune", 1, 0.1))
    trainer = Trainer(model, digits, cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 1e-4
    assert {id(s) for s in pruner.layers.scores} <= {id(p) for p in group["params"]}
    first = [m.clone() for m in pruner.layers.masks]
    scores = [s.detach().clone() for s in pruner.layers.scores]
    for step, (x, y) in enumerate(trainer.loader):
        trainer.training_step(x, y)
        if step == 3:
            break
    flipped = sum(int((a != b).sum()) for a, b in zip(first, pruner.layers.masks))
    assert flipped / sum(int(m.sum()) for m in first) > 1e-3  # measured: ~0.7 % of the kept weights in 4 steps
    assert all(not torch.equal(a, b) for a, b in zip(scores, pruner.layers.scores))  # no re-initialisation
    for m, s in zip(pruner.layers.masks, pruner.layers.scores):  # per-layer TopK(|S|) at the target
        assert torch.equal(m.bool(), top_mask(s.detach().abs(), keep_count(s.numel(), 0.9)))
        assert torch.equal(m.bool(), top_mask(0.5 * s.detach().abs(), keep_count(s.numel(), 0.9)))  # decay-blind
