import math

import numpy as np
import pytest
import torch

from compressor.analysis import condition_number
from pruners import MaskedLayers, condition_summary

from .conftest import AllKinds


@pytest.mark.parametrize("shape", [(16, 3, 3, 3), (24, 30), (8, 8, 5), (4, 8, 1, 3, 3)])
def test_kappa_equals_numpy_svd(shape):
    torch.manual_seed(0)
    w = torch.randn(shape)
    s = np.linalg.svd(w.reshape(shape[0], -1).double().numpy(), compute_uv=False)
    stats = condition_number(w)
    assert stats["kappa"] == pytest.approx(s.max() / s.min(), rel=1e-9)
    assert stats["sigma_max"] == pytest.approx(s.max(), rel=1e-9)
    assert stats["sigma_min"] == pytest.approx(s.min(), rel=1e-9)
    assert stats["frobenius"] == pytest.approx(np.linalg.norm(s), rel=1e-9)
    assert stats["rank"] == min(shape[0], w[0].numel())


def test_a_singular_pruned_matrix_has_infinite_kappa_and_a_finite_support_kappa():
    torch.manual_seed(0)
    w = torch.randn(6, 10)
    w[2] = 0  # a dead output unit
    s = np.linalg.svd(w.double().numpy(), compute_uv=False)
    stats = condition_number(w)
    assert stats["kappa"] == math.inf and stats["rank"] == 5
    assert stats["kappa_support"] == pytest.approx(s[0] / s[4], rel=1e-9)


def test_condition_summary_reads_the_masked_weights():
    torch.manual_seed(0)
    model = AllKinds()
    layers = MaskedLayers(model)
    layers.install()
    layers.set_masks([torch.rand(s) > 0.5 for s in layers.shapes])
    summary = condition_summary(model)
    for name, mod in zip(layers.names, layers.modules):
        s = np.linalg.svd(mod.weight.detach().reshape(mod.weight.shape[0], -1).double().numpy(), compute_uv=False)
        row = summary["layers"][name]
        assert row["sigma_max"] == pytest.approx(s.max(), rel=1e-9)
        assert row["sparsity"] == pytest.approx(float((mod.weight == 0).float().mean()))
    assert summary["lipschitz_bound"] == pytest.approx(
        math.prod(summary["layers"][n]["sigma_max"] for n in layers.names), rel=1e-9)
