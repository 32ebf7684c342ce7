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
    trainer.start()
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


def test_both_readings_of_lcc_on_a_tiny_tensor():
    from pruners.tscnc import lcc_term

    w = [torch.tensor([[0.5, 0.0], [-0.02, 1.0]]), torch.tensor([3.0])]
    tau = 1e-4
    layer = sum(math.log(tau + float((x ** 2).sum())) for x in w)
    # per weight: log(tau + w^2) - log(tau) over every weight (a pruned one adds 0)
    weight = sum(math.log(tau + v * v) - math.log(tau) for x in w for v in x.flatten().tolist())
    assert lcc_term(w, tau, "layer").item() == pytest.approx(layer, rel=1e-6)
    assert lcc_term(w, tau, "weight").item() == pytest.approx(weight, rel=1e-5)
    assert make_pruner("tscnc", sparsity=0.5, lcc="weight").config.as_dict()["lcc"] == "weight"
    assert make_pruner("tscnc", sparsity=0.5).config.lcc == "layer"
    with pytest.raises(Exception, match="`lcc`"):
        make_pruner("tscnc", sparsity=0.5, lcc="both")


def test_per_weight_reading_pushes_small_weights_harder():
    from pruners.tscnc import lcc_relative_grad, lcc_term

    w = torch.tensor([0.02, 0.1, 0.5, 2.0], requires_grad=True)
    lcc_term([w], 1e-4, "weight").backward()
    g = w.grad.abs()
    assert (g[:-1] > g[1:]).all()  # above sqrt(tau) = 0.01 the push falls with |w|
    torch.testing.assert_close(w.grad, 2 * w.detach() / (1e-4 + w.detach() ** 2))
    w.grad = None
    lcc_term([w], 1e-4, "layer").backward()
    assert (w.grad.abs()[:-1] < w.grad.abs()[1:]).all()  # the layer reading shrinks in proportion to w
    for reading in ("layer", "weight"):  # the logged ratio is the gradient's norm over the weight's
        x = torch.randn(6, 5).requires_grad_()
        lcc_term([x], 1e-4, reading).backward()
        assert lcc_relative_grad([x], 1e-4, reading).item() == pytest.approx(float(x.grad.norm() / x.detach().norm()),
                                                                              rel=1e-5)
    assert lcc_relative_grad([torch.zeros(3)], 1e-4, "weight").item() == 0


@pytest.mark.parametrize("lam", [0.0, 0.01])
def test_lcc_shrink_is_logged_per_layer(digits, tiny_cfg, lam):
    from dataclasses import replace as dc_replace

    from pruners import prune_model
    from pruners.tscnc import lcc_relative_grad

    pruner = make_pruner("tscnc", sparsity=0.5, lam=lam, lcc="weight", schedule="oneshot")
    model = cnn(digits)
    cb = PrunerCallback(pruner, Phase("finetune", 1, 0.01))
    trainer = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    x, y = next(iter(trainer.loader))
    lr = trainer.optimizer.param_groups[0]["lr"]
    trainer.training_step(x, y)
    expected = lr * lam * lcc_relative_grad(pruner.layers.effective(), 1e-4, "weight")
    shrink = pruner.lcc_shrink()
    assert list(shrink) == pruner.layers.names
    assert list(shrink.values()) == pytest.approx(expected.tolist(), rel=1e-5)
    assert all(v > 0 for v in shrink.values()) if lam else all(v == 0 for v in shrink.values())
    # through a whole job: in every epoch's history and in the summary the report takes
    small = dc_replace(digits, train=digits.train.head(128), val=digits.val.head(16))
    cfg = dc_replace(tiny_cfg, batch_size=64, val_n=16, steps=1, val_steps=1)
    res = prune_model(cnn(digits), small, make_pruner("tscnc", sparsity=0.5, lam=lam, schedule="oneshot"), cfg,
                      epochs_prune=0, epochs_finetune=2, track=False, quiet=True)
    first, last = (h["lcc_shrink"] for h in res["history"])
    total = res["summary"]["lcc_shrink"]
    assert total == last and set(total) == set(first)
    if lam:
        assert all(last[n] > first[n] > 0 for n in total)
    else:
        assert all(v == 0 for v in total.values())
