"""Training that fails cleanly: a non-finite loss or weight stops the run with one line before anything of it is saved;
the TRADES KL keeps finite gradients where a class probability underflows; kappa is never computed on NaN."""

from __future__ import annotations

import math

import pytest
import torch

from compressor.analysis import condition_number
from compressor.errors import CompressorError
from compressor.models import create_model
from compressor.training import Callback, Diverged, TrainConfig, Trainer, trades_kl
from compressor.workflows import model_kwargs


class NanLossFrom(Callback):
    """Adds a NaN to the loss from global step `step` on (a loss that diverges at a known point)."""

    def __init__(self, step: int):
        self.step = step

    def extra_loss(self, trainer, x, y):
        return torch.tensor(math.nan) if trainer.global_step >= self.step else None


def _trainer(digits, tmp_path, callbacks=(), **cfg) -> Trainer:
    torch.manual_seed(0)
    model = create_model("cnn-small", **model_kwargs(digits.info, width=4, hidden=8))
    config = TrainConfig(**{"epochs": 3, "batch_size": 128, "lr": 0.05, "adv": "none", "device": "cpu",
                            "val_n": 64, **cfg})
    return Trainer(model, digits, config, callbacks, state_path=tmp_path / "run.state", quiet=True)


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_state(digits, tmp_path):
    trainer = _trainer(digits, tmp_path)
    steps = len(trainer.loader)
    trainer.callbacks.append(NanLossFrom(steps + 2))  # the third step of the second epoch
    with pytest.raises(Diverged) as exc:
        trainer.fit()
    msg = str(exc.value)
    assert "\n" not in msg and isinstance(exc.value, CompressorError)
    assert f"epoch 2, step 3 (learning rate " in msg and "`lr`" in msg, msg
    assert "end of epoch 1" in msg and "`resume`" in msg, msg
    state = torch.load(tmp_path / "run.state", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1  # the diverged epoch was neither validated nor saved
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_divergence_in_the_first_epoch_saves_nothing(digits, tmp_path):
    trainer = _trainer(digits, tmp_path, lr=1e30)  # finite, but the weights overflow at once
    with pytest.raises(Diverged, match=r"epoch 1, step \d+ .*nothing was saved"):
        trainer.fit()
    assert not (tmp_path / "run.state").exists()


def test_a_finite_run_is_not_stopped(digits, tmp_path):
    result = _trainer(digits, tmp_path, epochs=1).fit()
    assert len(result.history) == 1 and math.isfinite(result.history[0]["loss"])


@pytest.mark.parametrize("lr", [math.inf, math.nan, 0.0, -0.1])
def test_non_finite_or_non_positive_lr_is_refused(lr):
    with pytest.raises(CompressorError, match="`lr` must be a finite number > 0"):
        TrainConfig(lr=lr).validate()


def test_weight_decay_inf_is_refused():
    with pytest.raises(CompressorError, match="must be finite"):
        TrainConfig(weight_decay=math.inf).validate()


def test_trades_kl_gradient_is_finite_where_a_probability_underflows():
    nat = torch.tensor([[150.0, 0.0, -60.0], [2.0, 1.0, 0.5]], requires_grad=True)  # softmax(nat)[0, 2] == 0 in fp32
    adv = torch.tensor([[140.0, 5.0, -50.0], [1.0, 2.0, 0.0]], requires_grad=True)
    assert torch.softmax(nat, 1)[0, 2] == 0
    trades_kl(nat, adv).backward()
    assert torch.isfinite(nat.grad).all() and torch.isfinite(adv.grad).all()
    # the reference form (probability target) has the NaN this avoids
    ref_nat = nat.detach().clone().requires_grad_(True)
    torch.nn.functional.kl_div(torch.log_softmax(adv.detach(), 1), torch.softmax(ref_nat, 1), reduction="sum").backward()
    assert torch.isnan(ref_nat.grad).any()


def test_trades_kl_matches_the_reference_where_that_is_finite():
    torch.manual_seed(0)
    nat, adv = torch.randn(8, 10, requires_grad=True), torch.randn(8, 10, requires_grad=True)
    ours = trades_kl(nat, adv)
    ref = torch.nn.functional.kl_div(torch.log_softmax(adv, 1), torch.softmax(nat, 1), reduction="sum") / 8
    g_ours = torch.autograd.grad(ours, [nat, adv])
    g_ref = torch.autograd.grad(ref, [nat, adv])
    assert torch.allclose(ours, ref, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_ours, g_ref))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_condition_number_never_sees_nan(bad):
    w = torch.randn(4, 3, 3, 3)
    w[1, 0, 0, 0] = bad
    with pytest.raises(CompressorError, match="NaN/inf"):
        condition_number(w)
