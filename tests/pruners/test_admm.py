import pytest
import torch

from compressor.training import Trainer
from pruners import PrunerCallback, make_pruner
from pruners.allocation import keep_count
from pruners.base import Phase

from .conftest import cnn


def test_z_u_updates_and_rho_schedule(digits, tiny_cfg):
    model = cnn(digits)
    pruner = make_pruner("admm", sparsity=0.8, updates_per_epoch=2)
    cb = PrunerCallback(pruner, Phase("prune", 2, 0.01))
    trainer = Trainer(model, digits, tiny_cfg, [cb], quiet=True)
    cb.on_train_begin(trainer)
    trainer.build_optimizer()
    cb.on_epoch_begin(trainer, 0)
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
    for _ in range(pruner._interval):
        trainer.training_step(x, y)
    w = [x.detach() for x in pruner.layers.effective()]
    assert pruner.rho == pytest.approx(1e-3 * 1.3)
    for z, u, wi, u0 in zip(pruner.z, pruner.u, w, u_old):
        v = wi + u0
        assert int((z != 0).sum()) == keep_count(z.numel(), 0.8)
        torch.testing.assert_close(z[z != 0], v[z != 0])  # Z = Proj_sparse(W + U)
        torch.testing.assert_close(u, u0 + wi - z)  # U += W - Z
    assert any(not torch.equal(a, b) for a, b in zip(z_old, pruner.z))
