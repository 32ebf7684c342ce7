"""Small CNN for digits / MNIST scale inputs."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..registry import MODELS
from .normalize import Normalize


class SmallCNN(nn.Module):
    """Three 3x3 convs and two FC layers; adaptive pooling makes it work from 8x8 to 32x32 inputs."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, mean: Sequence[float] = (0.0,),
                 std: Sequence[float] = (1.0,), width: int = 32, hidden: int = 128):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@MODELS.register("cnn-small")
def cnn_small(**kwargs) -> SmallCNN:
    """Small CNN (3 convs, 2 FC) for digits / MNIST / Fashion-MNIST."""
    return SmallCNN(**kwargs)
