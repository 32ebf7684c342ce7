"""The Kronecker layer, its nearest-Kronecker initialisation and ARLST's h(A), against explicit formulas."""

import math

import pytest
import torch
from torch import nn

from pruners.masking import MaskedLayers
from pruners.transforms.kronecker import (KroneckerLinear, auto_factors, condition_regularizer, from_linear,
                                          nearest_kronecker, rearrange)

FACTORS = [[3, 4], [5, 6]]  # A1 3x4, A2 5x6: a 15 x 24 layer


def layer(bias=True, seed=0):
    torch.manual_seed(seed)
    return KroneckerLinear(FACTORS, bias=bias).double()


def test_output_equals_explicit_kron_and_documented_vec_convention():
    m = layer()
    a1, a2 = m.factors[0].weight, m.factors[1].weight
    x = torch.randn(7, 24, dtype=torch.double)
    dense = x @ torch.kron(a1, a2).T + m.bias
    assert torch.allclose(m(x), dense, atol=1e-12)
    # the paper's column-major form: X' (K2 x K1) with vec(X') = x gives Y' = A2 X' A1^T, vec(Y') = y
    xc = x[0].reshape(4, 6).T  # column-major reshape of x into K2 x K1
    yc = a2 @ xc @ a1.T  # I2 x I1
    assert torch.allclose(yc.T.reshape(-1) + m.bias, m(x[:1])[0], atol=1e-12)
    # leading batch dimensions (tokens of a transformer) pass through
    assert torch.allclose(m(x.reshape(7, 1, 24)).reshape(7, 15), m(x), atol=1e-12)


def test_parameter_count():
    assert sum(p.numel() for p in layer(bias=False).parameters()) == 3 * 4 + 5 * 6
    assert sum(p.numel() for p in layer(bias=True).parameters()) == 3 * 4 + 5 * 6 + 15


def test_auto_factors_are_near_square():
    assert auto_factors(4096, 2048) == [[64, 32], [64, 64]]  # the paper's VGG FC example
    assert auto_factors(10, 7) == [[2, 1], [5, 7]]


def test_nearest_kronecker_exact_for_a_kronecker_product():
    torch.manual_seed(1)
    a1, a2 = torch.randn(3, 4, dtype=torch.double), torch.randn(5, 6, dtype=torch.double)
    b1, b2 = nearest_kronecker(torch.kron(a1, a2), FACTORS)
    assert torch.allclose(torch.kron(b1, b2), torch.kron(a1, a2), atol=1e-10)


def test_nearest_kronecker_attains_the_svd_optimum():
    torch.manual_seed(2)
    w = torch.randn(15, 24, dtype=torch.double)
    b1, b2 = nearest_kronecker(w, FACTORS)
    s = torch.linalg.svdvals(rearrange(w, FACTORS))
    err = (w - torch.kron(b1, b2)).norm()
    assert err == pytest.approx(float(s[1:].square().sum().sqrt()), rel=1e-9)
    # and no perturbation of the factors does better
    for _ in range(5):
        p1, p2 = b1 + 1e-3 * torch.randn_like(b1), b2 + 1e-3 * torch.randn_like(b2)
        assert (w - torch.kron(p1, p2)).norm() >= err


def test_from_linear_keeps_bias_and_matches_nearest_product():
    torch.manual_seed(3)
    lin = nn.Linear(24, 15).double()
    k = from_linear(lin, FACTORS)
    x = torch.randn(4, 24, dtype=torch.double)
    b1, b2 = nearest_kronecker(lin.weight, FACTORS)
    assert torch.allclose(k(x), x @ torch.kron(b1, b2).T + lin.bias, atol=1e-12)
    assert from_linear(nn.Linear(24, 15, bias=False), FACTORS).bias is None


def direct_h(factors, nu):
    """h from the paper's formula with det computed directly on the k x k Gram matrix (float64)."""
    total = 0.0
    for a in factors:
        a = a.double()
        k = min(a.shape)
        gram = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
        total += math.log(nu + float(torch.det(gram)) / k) ** 2 / (4 * k * math.log(k))
    return total / len(factors)


@pytest.mark.parametrize("shapes", [[(5, 3), (4, 4)], [(3, 5), (6, 2)]])  # tall and wide factors
def test_condition_regularizer_equals_direct_formula(shapes):
    torch.manual_seed(4)
    factors = [torch.randn(*s) for s in shapes]
    assert float(condition_regularizer(factors, nu=1e-3)) == pytest.approx(direct_h(factors, 1e-3), rel=1e-5)


def test_condition_regularizer_is_finite_with_gradients_for_a_singular_factor():
    a = torch.zeros(4, 4)
    a[0, 0] = 1.0
    a.requires_grad_(True)
    b = torch.randn(3, 3, requires_grad=True)
    h = condition_regularizer([a, b], nu=1e-3)
    h.backward()
    assert torch.isfinite(h) and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # log(nu + 0) for the singular factor: its term is log(nu)^2 / (4 k log k)
    singular_term = math.log(1e-3) ** 2 / (4 * 4 * math.log(4))
    assert float(h.detach()) == pytest.approx((singular_term + direct_h([b.detach()], 1e-3)) / 2, rel=1e-5)


def test_factors_are_found_and_masked_like_any_layer():
    model = nn.Sequential(KroneckerLinear(FACTORS), nn.ReLU(), nn.Linear(15, 2))
    layers = MaskedLayers(model)
    assert layers.names == ["0.factors.0", "0.factors.1", "2"] and layers.shapes[:2] == [(3, 4), (5, 6)]
    layers.install()
    mask = torch.ones(3, 4)
    mask[:, 0] = 0
    layers.set_masks([mask, torch.ones(5, 6), torch.ones(2, 15)])
    x = torch.randn(2, 24)
    w = torch.kron(model[0].factors[0].weight, model[0].factors[1].weight)
    assert (model[0].factors[0].weight[:, 0] == 0).all()
    assert torch.allclose(model[0](x), x @ w.T + model[0].bias, atol=1e-6)
