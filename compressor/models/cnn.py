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


class ConvNetMNIST(nn.Module):
    """Two stride-2 4x4 convs and two FC layers: the MNIST network of convex_adversarial and fast_adversarial.

    Those projects save it as a bare ``nn.Sequential`` state dict (keys ``0.*``, ``2.*``, ``5.*``, ``7.*``);
    `adapt_state_dict` maps that layout onto the named layers here, so their released checkpoints load as-is.
    """

    UPSTREAM = {"0.": "features.0.", "2.": "features.2.", "5.": "classifier.1.", "7.": "classifier.3."}

    def __init__(self, num_classes: int = 10, in_chans: int = 1, mean: Sequence[float] = (0.0,),
                 std: Sequence[float] = (1.0,), image_size: int = 28, width: int = 16, hidden: int = 100):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.normalize = Normalize(mean, std)
        # the pooling is the identity at `image_size` (exactly the upstream network) and lets other sizes run
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(image_size // 4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * (image_size // 4) ** 2, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))

    @classmethod
    def adapt_state_dict(cls, state_dict: dict) -> dict:
        """Rename the upstream ``nn.Sequential`` keys; other layouts pass through unchanged."""
        if not any(k.startswith(tuple(cls.UPSTREAM)) for k in state_dict):
            return state_dict
        out = {}
        for k, v in state_dict.items():
            prefix = next((p for p in cls.UPSTREAM if k.startswith(p)), None)
            out[cls.UPSTREAM[prefix] + k[len(prefix):] if prefix else k] = v
        return out


@MODELS.register("convnet-mnist")
def convnet_mnist(**kwargs) -> ConvNetMNIST:
    """2 stride-2 convs + 2 FC (Wong & Kolter's MNIST net); loads convex_adversarial / fast_adversarial weights."""
    return ConvNetMNIST(**kwargs)
