import pytest
import torch

from compressor.training import Trainer
from pruners import PrunerCallback, make_pruner
from pruners.allocation import keep_count
from pruners.base import Phase

from .conftest import cnn


def test_z_u_updates_and_rho_schedule(digits, tiny_cfg):
    model = cnn(digits)
    pruner = make_pruner("admm", sparsity=0.8, admm_interval=0.5)  # two Z/U updates per epoch
    cb = PrunerCallback(pruner, Phase("prune", 2, 0.01))
    trainer = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    w = [x.detach().clone() for x in pruner.layers.effective()]
    for z, wi in zip(pruner.z, w):  # Z starts as the projection of W (U = 0)
        assert int((z != 0).sum()) == keep_count(z.numel(), 0.8)
        assert torch.equal(z[z != 0], wi[z != 0])
    x, y = next(iter(trainer.loader))
    penalty = pruner.regularizer()
    direct = 0.5 * 1e-3 * sum(float(((a - z) ** 2).sum()) for a, z in zip(w, pruner.z))
    assert penalty.item() == pytest.approx(direct, rel=1e-5)
    assert all(m.all() for m in pruner.layers.masks)  # the ADMM phase trains dense weights
    z_old, u_old = [z.clone() for z in pruner.z], [u.clone() for u in pruner.u]
    interval = round(0.5 * len(trainer.loader))
    assert min(pruner._updates) == interval
    for _ in range(interval):
        trainer.training_step(x, y)
    w = [x.detach() for x in pruner.layers.effective()]
    assert pruner.zu_updates == 1
    assert pruner.rho == pytest.approx(1e-3 * 1.3)
    for z, u, wi, u0 in zip(pruner.z, pruner.u, w, u_old):
        v = wi + u0
        assert int((z != 0).sum()) == keep_count(z.numel(), 0.8)
        torch.testing.assert_close(z[z != 0], v[z != 0])  # Z = Proj_sparse(W + U)
        torch.testing.assert_close(u, u0 + wi - z)  # U += W - Z
    assert any(not torch.equal(a, b) for a, b in zip(z_old, pruner.z))


def test_interval_scales_the_reference_schedule_and_rho_is_capped():
    """The reference: 10 updates in 200 ADMM epochs (one every 20); a shorter phase keeps the 10 updates."""
    from pruners.admm import REFERENCE_UPDATES

    pruner = make_pruner("admm", sparsity=0.5)
    pruner.prepare(torch.nn.Sequential(torch.nn.Linear(8, 4)), steps_per_epoch=30)
    pruner.start_phase(Phase("prune", 200, 0.01))
    assert sorted(pruner.update_steps()) == [20 * 30 * k for k in range(1, 11)]
    pruner.start_phase(Phase("prune", 5, 0.01))
    assert sorted(pruner.update_steps()) == [15 * k for k in range(1, 11)]  # every half epoch
    assert REFERENCE_UPDATES == 10 and pruner.config.rho_cap == pytest.approx(1e-3 * 1.3 ** 10)
    assert make_pruner("admm", sparsity=0.5, rho_max=0.5).config.rho_cap == 0.5


def _long_admm_run(digits, epochs: int, batch: int = 32, n: int = 64, **options):
    """`epochs` ADMM epochs of n / batch steps each on `n` digits (PGD-1, 16 validation images): seconds, not
    minutes; returns the model, the losses and the job."""
    from dataclasses import replace as dc_replace

    from compressor.training import TrainConfig
    from pruners import prune_model

    small = dc_replace(digits, train=digits.train.head(n), val=digits.val.head(16))
    cfg = TrainConfig(batch_size=batch, adv="pgd", eps=0.1, steps=1, val_steps=1, val_n=16, device="cpu",
                      log_every=100)
    model = cnn(digits)
    res = prune_model(model, small, make_pruner("admm", sparsity=0.9, **options), cfg, epochs_prune=epochs,
                      epochs_finetune=0, track=False, quiet=True)
    return model, [h["loss"] for h in res["history"]], res


@pytest.mark.slow
def test_sixty_admm_epochs_do_not_diverge(digits):
    model, losses, _ = _long_admm_run(digits, 60)  # the reference schedule: 10 updates, rho <= 1e-3 * 1.3^10
    assert len(losses) == 60 and max(losses) < 50  # cross-entropy ~2.3 plus rho/2 ||W - Z + U||^2 (rho <= 0.014)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model, losses, _ = _long_admm_run(digits, 60, admm_interval=1)  # 60 updates: the cap keeps lr * rho small
    assert max(losses) < 50 and losses[-1] < max(losses)
    # the old schedule (rho x1.3 every epoch, no cap) passes lr * rho > 2 after ~47 epochs and blows up (here the
    # loss passes 1e6 by epoch 60; longer runs end in NaN)
    _, losses, _ = _long_admm_run(digits, 60, admm_interval=1, rho_max=float("inf"))
    assert not max(losses) < 1e4


@pytest.mark.parametrize("updates, steps, expected", [(None, 6, 6), (4, 6, 4), (None, 40, 10)])
def test_admm_updates_count_is_honoured(digits, updates, steps, expected):
    """The reference's 10 Z/U updates spread over the phase (every step when it has fewer), or `admm_updates`."""
    options = {} if updates is None else {"admm_updates": updates}
    pruner = make_pruner("admm", sparsity=0.5, **options)
    pruner.prepare(torch.nn.Sequential(torch.nn.Linear(8, 4)), steps_per_epoch=steps // 2)
    pruner.start_phase(Phase("prune", 2, 0.01))
    assert len(pruner.update_steps()) == expected and max(pruner.update_steps()) == steps
    if steps == 6:  # and in a real run: 2 epochs of 3 steps
        _, _, res = _long_admm_run(digits, 2, batch=32, n=96, **options)
        assert res["summary"]["admm_updates"] == expected and res["history"][-1]["admm_updates"] == expected
        assert res["summary"]["rho"] == pytest.approx(1e-3 * 1.3 ** expected)


def test_admm_updates_and_interval_exclude_each_other():
    from compressor.errors import CompressorError

    with pytest.raises(CompressorError, match="`admm_updates`"):
        make_pruner("admm", sparsity=0.5, admm_updates=3, admm_interval=1)
    with pytest.raises(CompressorError, match="`admm_updates`"):
        make_pruner("admm", sparsity=0.5, admm_updates=0)
