"""CIFAR VGG-16 with batch norm as used by HYDRA (256-wide classifier) and ARLST (4096-wide classifier)."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from ..registry import MODELS
from .init import kaiming_init
from .normalize import Normalize

# Output channels of each 3x3 conv; "M" is a 2x2 max pool.
VGG16_CFG: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def make_features(cfg: Sequence[Union[int, str]], in_chans: int) -> nn.Sequential:
    """Bias-free 3x3 conv -> BatchNorm2d -> ReLU per number in `cfg`, MaxPool2d(2) per "M"."""
    layers: list[nn.Module] = []
    channels = in_chans
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            width = int(item)
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG with BN: `features`, `avgpool` to 2x2, then a three-layer `classifier` of width `fc_width`."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, fc_width: int = 256,
                 cfg: Sequence[Union[int, str]] = VGG16_CFG):
        super().__init__()
        self.normalize = Normalize(mean if mean is not None else [0.0] * in_chans,
                                   std if std is not None else [1.0] * in_chans)
        self.features = make_features(cfg, in_chans)
        last = [c for c in cfg if c != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(int(last) * 2 * 2, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, num_classes),
        )
        kaiming_init(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(self.normalize(x)))
        return self.classifier(torch.flatten(x, 1))


@MODELS.register("vgg16_bn")
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with BN for CIFAR, 256-wide classifier (HYDRA)."""
    return VGG(**kwargs)


@MODELS.register("vgg16_bn_fc4096")
def vgg16_bn_fc4096(**kwargs) -> VGG:
    """VGG-16 with BN for CIFAR, 4096-wide classifier (ARLST)."""
    kwargs.setdefault("fc_width", 4096)
    return VGG(**kwargs)
