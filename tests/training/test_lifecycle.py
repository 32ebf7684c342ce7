"""The Trainer's public lifecycle: `start` / `begin_epoch` / `training_step` are what `fit` runs, and the
`on_optimizer` hook hands callbacks the optimizer once."""

from dataclasses import replace

import pytest
import torch

from compressor.errors import CompressorError
from compressor.models import create_model
from compressor.training import Callback, TrainConfig, Trainer


@pytest.fixture(scope="module")
def small(digits):
    return replace(digits, train=digits.train.head(256), val=digits.val.head(64))


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-identical comparisons: as the recorded numbers were made


def _cnn(data):
    torch.manual_seed(0)
    info = data.info
    return create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 0.1, "adv": "pgd", "eps": 0.1, "steps": 2,
                          "val_steps": 2, "val_n": 64, "device": "cpu", "log_every": 100, **overrides})


class _Hooks(Callback):
    """Records the order of the set-up hooks and the optimizers it was handed."""

    def __init__(self):
        self.calls: list[str] = []
        self.optimizers: list[torch.optim.Optimizer] = []

    def on_train_begin(self, trainer):
        self.calls.append("train_begin")

    def on_optimizer(self, trainer, optimizer):
        self.calls.append("optimizer")
        self.optimizers.append(optimizer)

    def on_epoch_begin(self, trainer, epoch):
        self.calls.append(f"epoch {epoch}")


def test_start_sets_up_once_and_hands_callbacks_the_optimizer_fit_uses(small):
    hooks = _Hooks()
    trainer = Trainer(_cnn(small), small, _config(epochs=1), [hooks], quiet=True)
    with pytest.raises(CompressorError, match=r"begin_epoch\(\) before Trainer.start\(\)"):
        trainer.begin_epoch()
    x, y = next(iter(trainer.loader))
    with pytest.raises(CompressorError, match=r"training_step\(\) before Trainer.start\(\)"):
        trainer.training_step(x, y)
    trainer.start()
    assert hooks.calls == ["train_begin", "optimizer"] and hooks.optimizers == [trainer.optimizer]
    trainer.start()  # idempotent
    with pytest.raises(CompressorError, match="`resume` after the trainer was started afresh"):
        trainer.start(resume=True)
    trainer.fit()  # fit continues what start set up: no second set-up
    assert hooks.calls == ["train_begin", "optimizer", "epoch 0"] and hooks.optimizers == [trainer.optimizer]


def test_resume_without_a_state_path_is_refused_before_any_hook(small):
    hooks = _Hooks()
    with pytest.raises(CompressorError, match="`resume` needs the training state path"):
        Trainer(_cnn(small), small, _config(), [hooks], quiet=True).start(resume=True)
    assert hooks.calls == []


def test_fit_is_start_begin_epoch_and_training_steps(small):
    cfg = _config(epochs=1, select="last")
    fitted = _cnn(small)
    torch.manual_seed(1)
    Trainer(fitted, small, cfg, quiet=True).fit()
    by_hand = _cnn(small)
    torch.manual_seed(1)
    trainer = Trainer(by_hand, small, cfg, quiet=True)
    trainer.start()
    trainer.begin_epoch()
    for x, y in trainer.loader:
        trainer.training_step(x, y)
    for (k, a), b in zip(fitted.state_dict().items(), by_hand.state_dict().values()):
        assert torch.equal(a, b), k


def test_fit_gives_the_numbers_it_gave_before_the_lifecycle(small):
    """Recorded with the fit that set itself up inline (before `start`), on the CPU with one thread: a change of
    the set-up's order or of its random draws moves these by ~1e-3 (another seed: 2.3074, 2.2780)."""
    result = Trainer(_cnn(small), small, _config(), quiet=True).fit()
    got = [[h[k] for k in ("loss", "train_adv_acc", "val_clean_acc", "val_pgd_acc")] for h in result.history]
    expected = [[2.3044915199279785, 0.109375, 0.15625, 0.109375], [2.2792766094207764, 0.13671875, 0.15625, 0.109375]]
    assert got == [pytest.approx(row, rel=1e-5) for row in expected]
