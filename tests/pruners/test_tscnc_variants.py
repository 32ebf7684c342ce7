"""TSCNC beyond the paper: lambda adapted from measured condition numbers, and ARLST's log-det term on each
pruned layer's support (it must lift a small singular value, which the log-Frobenius term cannot)."""

from __future__ import annotations

import math

import pytest
import torch

from compressor.errors import CompressorError
from pruners import make_pruner
from pruners.base import Phase
from pruners.tscnc import log_frobenius, logdet_gap, support_kappa, support_logdet, support_matrix


def test_support_matrix_drops_pruned_rows_and_columns():
    w = torch.arange(1.0, 13.0).reshape(3, 4)
    m = torch.ones(3, 4)
    m[1] = 0
    m[:, 2] = 0
    assert support_matrix(w * m, m).shape == (2, 3)


def test_logdet_gradient_lifts_the_smallest_singular_value_and_log_frobenius_does_not():
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    w0 = (u @ torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1e-2], dtype=torch.float64)) @ u.T).float()
    mask = torch.ones_like(w0)
    kappas = {}
    for name, term in (("logdet", lambda w: support_logdet([w], [mask], 1e-3, "gap")),
                       ("logfro", lambda w: log_frobenius([w], 1e-4))):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.SGD([w], lr=0.05)
        for _ in range(50):
            opt.zero_grad()
            term(w).backward()
            opt.step()
        s = torch.linalg.svdvals(w.detach())
        kappas[name] = float(s.max() / s.min())
    assert kappas["logdet"] < 50 and kappas["logfro"] == pytest.approx(100.0, rel=0.02)  # scale-invariant: no change


def test_adaptive_lambda_follows_the_measured_kappa():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    pruner = make_pruner("tscnc", sparsity=0.5, schedule="oneshot", adapt_lambda=True, kappa_target=2.0,
                         logdet=0.1)
    pruner.prepare(model, score_data=[(torch.rand(4, 8), torch.randint(0, 3, (4,)))],
                   score_loss=lambda m, x, y: torch.nn.functional.cross_entropy(m(x), y), seed=0)
    pruner.start_phase(Phase("finetune", 1, 0.01))
    pruner.epoch_begin(0)
    kappa = support_kappa([w.detach() for w in pruner.layers.effective()])
    assert pruner.lam_now == pytest.approx(1e-3 * min(max(kappa / 2.0, 0.1), 100.0))
    term = pruner.loss_term()
    assert term is not None and math.isfinite(float(term.detach())) and term.requires_grad


def test_bad_variant_options_are_one_line():
    with pytest.raises(CompressorError, match="`logdet` >= 0"):  # the library's name; the CLI shows --logdet
        make_pruner("tscnc", sparsity=0.5, logdet=-1.0)


def test_logdet_gap_is_scale_invariant_and_zero_for_orthogonal():
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1)))
    assert float(logdet_gap(q)) == pytest.approx(0.0, abs=1e-5)
    a = torch.randn(4, 9, generator=torch.Generator().manual_seed(2))
    assert float(logdet_gap(3 * a)) == pytest.approx(float(logdet_gap(a)), rel=1e-5) and float(logdet_gap(a)) > 0


def test_arlst_form_saturates_on_a_realistic_layer():
    grads = {}
    for form in ("arlst", "gap"):  # a conv-like 32 x 288 layer with weights ~0.02: log det(G) about -60
        w = (0.02 * torch.randn(32, 288, generator=torch.Generator().manual_seed(3))).requires_grad_(True)
        support_logdet([w], [torch.ones_like(w)], 1e-3, form).backward()
        grads[form] = float(w.grad.abs().max())
    assert grads["arlst"] < 1e-6 * grads["gap"]  # det(G)/k << nu: no gradient, hence the gap form by default
