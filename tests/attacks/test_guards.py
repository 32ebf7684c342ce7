"""Protocol guards: logits not probabilities, live gradients, signs of gradient masking, the RNG left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compressor.attacks import (Attack, build_attack, check_logits, gradient_warning, logits_fn, masking_warnings,
                                preserved_rng)
from compressor.errors import CompressorError
from compressor.evaluation import evaluate


class Rounded(nn.Module):
    """Rounds its input before the model: the input gradients are exactly zero (a masked model)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


class Detached(nn.Module):
    """Cuts the graph: the input gradients cannot be computed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.no_grad():
            return self.model(x)


class OutOfBall(Attack):
    """A broken attack that leaves the eps-ball."""

    name = "broken"

    def __call__(self, model, x, y):
        return (x + 3 * self.eps).clamp(0, 1)


@pytest.fixture(scope="module")
def batch(digits):
    return digits.test.float_images()[:64], digits.test.y[:64]


@pytest.mark.slow
def test_probabilities_are_refused_logits_and_log_probabilities_pass(robust_model, batch):
    x, _ = batch
    with torch.no_grad():
        logits = robust_model(x)
    check_logits(logits)
    check_logits(torch.log_softmax(logits, 1))
    with pytest.raises(CompressorError, match="probabilities.*remove its final softmax") as exc:
        check_logits(torch.softmax(logits, 1))
    assert "\n" not in str(exc.value)
    with pytest.raises(CompressorError, match="shape"):
        check_logits(logits[:, :1])


@pytest.mark.slow
def test_evaluate_refuses_a_probability_model_before_attacking(robust_model, digits):
    probs = nn.Sequential(robust_model, nn.Softmax(dim=1))
    with pytest.raises(CompressorError, match="probabilities"):
        evaluate(probs, digits.test, [build_attack("pgd10", 0.1)], n=64)
    assert evaluate(probs, digits.test, [], n=64)["clean_accuracy"] > 0.9  # clean accuracy alone is fine


@pytest.mark.slow
def test_zero_gradients_warn_live_gradients_do_not(robust_model, batch):
    x, y = batch
    assert gradient_warning(robust_model, x, y) is None
    msg = gradient_warning(Rounded(robust_model), x, y)
    assert "gradient masking" in msg and "non-differentiable" in msg
    with pytest.raises(CompressorError, match="not differentiable"):
        gradient_warning(Detached(robust_model), x, y)


@pytest.mark.slow
def test_evaluate_reports_zero_gradients_and_black_box_beating_white_box(robust_model, digits):
    masked = Rounded(robust_model)
    res = evaluate(masked, digits.test, [build_attack("pgd20", 0.15), build_attack("square300", 0.15)], n=64)
    text = " | ".join(res["warnings"])
    assert "input gradients are zero" in text
    acc = {k: v["accuracy"] for k, v in res["attacks"].items()}
    assert acc["square300"] < acc["pgd20"] and "black-box square300" in text, (acc, text)


def test_no_warnings_for_a_healthy_model(robust_model, digits):
    res = evaluate(robust_model, digits.test, [build_attack("fgsm", 0.1), build_attack("pgd10", 0.1)], n=64)
    assert res["warnings"] == []


def test_out_of_ball_attacks_are_flagged(robust_model, digits):
    res = evaluate(robust_model, digits.test, [OutOfBall(0.1)], n=32)
    assert any("outside the linf eps-ball" in w for w in res["warnings"])


def _results(**acc: float) -> dict:
    return {k.replace("_", "-"): {"accuracy": v} for k, v in acc.items()}


def test_masking_warnings_from_results():
    attacks = [build_attack(s, 0.1) for s in ("pgd20", "pgd10", "square", "aa", "cw")]
    ok = masking_warnings(_results(pgd20=0.50, pgd10=0.52, square=0.55, aa=0.47, cw=0.49), attacks)
    assert ok == []
    bad = masking_warnings(_results(pgd20=0.50, pgd10=0.52, square=0.40, aa=0.44, cw=0.49), attacks)
    assert len(bad) == 2
    assert "square" in bad[0] and "gradient masking" in bad[0]
    assert "aa" in bad[1] and "6.0 points below pgd20" in bad[1]
    # PGD-10 alone is no reference for the AutoAttack gap (it is expected to be weaker)
    few = [build_attack(s, 0.1) for s in ("pgd10", "aa")]
    assert masking_warnings(_results(pgd10=0.60, aa=0.40), few) == []
    # nor is one-step FGSM a yardstick for Square
    assert masking_warnings(_results(fgsm=0.60, square=0.50), [build_attack(s, 0.1) for s in ("fgsm", "square")]) == []


def test_preserved_rng_restores_the_global_state():
    torch.manual_seed(42)
    state = torch.get_rng_state()
    with preserved_rng("cpu"):
        torch.manual_seed(0)
        torch.rand(10)
    assert torch.equal(torch.get_rng_state(), state)


def test_logits_fn_accepts_modules_and_array_callables():
    lin = nn.Linear(4, 3)
    assert logits_fn(lin) is lin
    fn = logits_fn(lambda x: np.ones((len(x), 3), dtype=np.float64))
    out = fn(torch.zeros(2, 4))
    assert out.dtype == torch.float32 and out.shape == (2, 3)
