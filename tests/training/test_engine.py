import math

import pytest
import torch

from compressor.attacks import build_attack
from compressor.errors import CompressorError
from compressor.evaluation import evaluate
from compressor.models import create_model
from compressor.training import Callback, TrainConfig, Trainer, trades_loss

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier


def test_trades_loss_equals_direct_computation():
    torch.manual_seed(0)
    nat, adv = torch.randn(5, 4), torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    p, q = nat.softmax(1), adv.softmax(1)
    ce = -sum(math.log(p[i, y[i]]) for i in range(5)) / 5
    kl = sum(float((p[i] * (p[i].log() - q[i].log())).sum()) for i in range(5)) / 5
    assert trades_loss(nat, adv, y, beta=6.0).item() == pytest.approx(ce + 6.0 * kl, rel=1e-5)


def test_pgd_at_is_more_robust_than_standard(standard_model, robust_model, digits):
    def robust_acc(model):
        torch.manual_seed(0)
        return evaluate(model, digits.test, [build_attack("pgd20", 0.1)])["attacks"]["pgd20"]["accuracy"]

    std, rob = robust_acc(standard_model), robust_acc(robust_model)
    assert rob > std + 0.2, (std, rob)
    assert evaluate(robust_model, digits.test)["clean_accuracy"] > 0.9


def _fresh(digits):
    torch.manual_seed(0)
    return create_model("cnn-small", 10, 1, digits.info.mean, digits.info.std)


class _Interrupt(Callback):
    def on_epoch_begin(self, trainer, epoch):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.parametrize("adv", ["pgd", "trades"])
def test_resume_matches_uninterrupted_run(digits, tmp_path, adv):
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.05, adv=adv, eps=0.1, steps=3, val_steps=3, val_n=100,
                      device="cpu", select="last")
    full = _fresh(digits)
    Trainer(full, digits, cfg, quiet=True).fit()

    state = tmp_path / "run.state"
    interrupted = _fresh(digits)
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, digits, cfg, [_Interrupt()], state_path=state, quiet=True).fit()
    assert state.is_file()
    torch.manual_seed(123)  # a different RNG state: resume must restore the saved one
    resumed = _fresh(digits)
    trainer = Trainer(resumed, digits, cfg, state_path=state, quiet=True)
    result = trainer.fit(resume=True)
    assert [h["epoch"] for h in result.history] == [1, 2]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_with_other_settings_is_refused(digits, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=128, adv="none", device="cpu", val_n=50)
    state = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        Trainer(_fresh(digits), digits, cfg, [_Interrupt()], state_path=state, quiet=True).fit()
    other = TrainConfig(epochs=3, batch_size=128, adv="none", device="cpu", val_n=50, lr=0.5, weight_decay=0.0)
    with pytest.raises(CompressorError, match=r"epochs 3 \(saved run: 2\); lr 0.5 \(saved run: 0.1\); weight-decay 0.0 "
                                              r"\(saved run: 0.0005\)"):
        Trainer(_fresh(digits), digits, other, state_path=state, quiet=True).fit(resume=True)
    with pytest.raises(CompressorError, match=r"arch cnn-other \(saved run: unset\)"):  # what the caller adds
        Trainer(_fresh(digits), digits, cfg, state_path=state, quiet=True, settings={"arch": "cnn-other"}).fit(resume=True)
    moved = TrainConfig(epochs=2, batch_size=128, adv="none", device="cpu:0", val_n=50)  # the device may change
    Trainer(_fresh(digits), digits, moved, state_path=state, quiet=True).fit(resume=True)


class _Recorder(Callback):
    """Adds a loss term, zeroes a gradient and freezes a layer: what pruners do."""

    def __init__(self):
        self.calls = {"begin": 0, "extra": 0, "after_backward": 0, "step_end": 0, "epoch_end": 0}

    def on_train_begin(self, trainer):
        self.calls["begin"] += 1

    def on_epoch_begin(self, trainer, epoch):
        trainer.model.classifier[1].weight.requires_grad_(False)  # freeze a layer

    def extra_loss(self, trainer, x, y):
        self.calls["extra"] += 1
        return 0.0 * trainer.model.features[0].weight.sum() + 1.0

    def on_after_backward(self, trainer):
        self.calls["after_backward"] += 1
        trainer.model.features[0].weight.grad.zero_()

    def on_step_end(self, trainer):
        self.calls["step_end"] += 1

    def on_epoch_end(self, trainer, epoch, metrics):
        self.calls["epoch_end"] += 1
        metrics["custom"] = 42.0


def test_callbacks_hook_into_the_loop(digits):
    model = _fresh(digits)
    frozen = model.classifier[1].weight.detach().clone()
    first = model.features[0].weight.detach().clone()
    rec = _Recorder()
    cfg = TrainConfig(epochs=1, batch_size=128, adv="none", device="cpu", val_n=50, weight_decay=0.0, momentum=0.0)
    trainer = Trainer(model, digits, cfg, [rec], quiet=True)
    result = trainer.fit()
    steps = len(trainer.loader)
    assert rec.calls == {"begin": 1, "extra": steps, "after_backward": steps, "step_end": steps, "epoch_end": 1}
    assert result.history[0]["custom"] == 42.0
    assert result.history[0]["loss"] > 1.0  # the +1 term is in the loss
    assert torch.equal(model.classifier[1].weight, frozen)
    assert torch.equal(model.features[0].weight, first)  # gradient zeroed, no decay, no momentum
    assert not torch.equal(model.classifier[3].weight, _fresh(digits).classifier[3].weight)


def test_bad_config_is_one_clear_error(digits):
    with pytest.raises(CompressorError, match="`adv`"):
        Trainer(_fresh(digits), digits, TrainConfig(adv="madry", device="cpu"))
    with pytest.raises(CompressorError, match="`eps`"):
        Trainer(_fresh(digits), digits, TrainConfig(eps=-0.1, device="cpu"))
