import math

import pytest
import torch
import torch.nn.functional as F

from compressor.training import Trainer
from pruners import MaskedLayers, PrunerCallback, make_pruner
from pruners.base import Phase
from pruners.scores import taylor_scores
from pruners.tscnc import log_frobenius

from .conftest import AllKinds, cnn


def test_regulariser_value_and_gradient_equal_a_direct_computation():
    torch.manual_seed(0)
    model = AllKinds()
    layers = MaskedLayers(model)
    layers.install()
    masks = [torch.rand(s) > 0.6 for s in layers.shapes]
    layers.set_masks(masks, zero_weights=False)
    tau, lam = 1e-4, 1e-3
    value = lam * log_frobenius(layers.effective(), tau)
    value.backward()
    direct = 0.0
    for w, m in zip(layers.stored, masks):
        wm = (w.detach().double() * m)
        fro2 = float((wm ** 2).sum())
        direct += math.log(tau + fro2)
        # d/dW [lam * log(tau + ||W ⊙ M||^2)] = lam * 2 (W ⊙ M) ⊙ M / (tau + ||W ⊙ M||^2)
        torch.testing.assert_close(w.grad.double(), lam * 2 * wm * m / (tau + fro2), rtol=1e-5, atol=1e-12)
    assert value.item() == pytest.approx(lam * direct, rel=1e-6)


def test_tscnc_adds_the_term_to_the_training_loss(digits, tiny_cfg):
    pruner = make_pruner("tscnc", sparsity=0.5, lam=0.1)
    model = cnn(digits)
    cb = PrunerCallback(pruner, Phase("finetune", 1, 0.01))
    trainer = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    cb.on_train_begin(trainer)
    x, y = next(iter(trainer.loader))
    assert cb.extra_loss(trainer, x, y).item() == pytest.approx(0.1 * log_frobenius(
        [m.weight for m in pruner.layers.modules], 1e-4).item())
    assert make_pruner("tscnc", sparsity=0.5, lam=0.0).loss_term() is None


@pytest.mark.parametrize("squared", [False, True])
def test_taylor_score_is_weight_times_adversarial_gradient(digits, squared):
    model = cnn(digits)
    layers = MaskedLayers(model)
    layers.install()
    split = digits.train.head(64)
    torch.manual_seed(5)
    scores = taylor_scores(model, layers, split, eps=0.1, alpha=0.05, steps=2, samples=64, batch_size=64,
                           squared=squared, seed=3)
    # the same PGD examples, recomputed directly
    from compressor.attacks import pgd
    from compressor.data import BatchLoader

    torch.manual_seed(5)
    x, y = next(iter(BatchLoader(split, 64, shuffle=True, seed=3)))
    model.eval()
    x_adv = pgd(model, x, y, eps=0.1, alpha=0.05, steps=2, loss="ce", init="uniform")
    F.cross_entropy(model(x_adv), y).backward()
    for s, w in zip(scores, layers.stored):
        t = w.detach() * w.grad
        torch.testing.assert_close(s, t * t if squared else t.abs())
