"""Small models and a tiny training configuration for the pruner tests (CPU, seconds per run)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.models import create_model
from compressor.training import TrainConfig


def cnn(digits, seed: int = 0) -> nn.Module:
    """An untrained cnn-small for digits (pruning mechanics do not need a trained model)."""
    torch.manual_seed(seed)
    info = digits.info
    return create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)


class AllKinds(nn.Module):
    """Conv1d, Conv2d, Conv3d and Linear layers, input sizes divisible by 4 except the first of each."""

    def __init__(self):
        super().__init__()
        self.c1a, self.c1b = nn.Conv1d(3, 8, 3), nn.Conv1d(8, 8, 5)
        self.c2a, self.c2b = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3)
        self.c3a, self.c3b = nn.Conv3d(1, 8, 3), nn.Conv3d(8, 4, (1, 3, 3))
        self.fc1, self.fc2 = nn.Linear(30, 24), nn.Linear(24, 5)


@pytest.fixture
def tiny_cfg() -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=128, lr=0.05, adv="trades", eps=0.1, steps=2, val_steps=2, val_n=64,
                       device="cpu", log_every=100)


@pytest.fixture(autouse=True)
def pruner_tests_use_one_thread(one_thread):
    """Every pruner test runs on one torch thread (`tests.conftest.one_thread`)."""
    yield
