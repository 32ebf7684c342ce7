"""The akamaster CIFAR-10 ResNets (akamaster/pytorch_resnet_cifar10 ``resnet.py``: resnet20/32/44/56), written from
the published architecture facts so their state dicts (``{'state_dict', 'best_prec1'}``, keys prefixed ``module.``)
load unchanged.

Facts: a 3x3 stem at 16 channels with BatchNorm; three stages of n BasicBlocks (conv3x3-BN-ReLU-conv3x3-BN, ReLU
after the add) at 16, 32, 64 channels, the first block of stages 2 and 3 with stride 2; option-A shortcuts where the
shape changes: a parameter-free ``LambdaLayer`` that subsamples ``x[:, :, ::2, ::2]`` and zero-pads planes // 4
channels on each side; global average pooling; ``linear`` to the classes. Bias-free convolutions. The weights take
normalised input (ImageNet mean/std, see ../shared/checkpoints/README.md): pass them as `mean`/`std` (the model is
then wrapped in a `Normalize`).

Use: ``compressor prune resnet20-12fca82f.th --arch benchmarks.models.akamaster:resnet20 --mean ... --std ...``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from compressor.models import resnet

__all__ = ["LambdaLayer", "BasicBlock", "CifarResNet", "resnet20", "resnet32", "resnet44", "resnet56"]


class LambdaLayer(nn.Module):
    """A module around a parameter-free function (the option-A shortcut)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.lambd = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lambd(x)


class BasicBlock(resnet.BasicBlock):
    """The zoo's conv3x3(stride)-BN-ReLU-conv3x3-BN block with option A where the shape changes: the shortcut
    subsamples and zero-pads channels (no parameters) instead of a 1x1 convolution."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__(in_planes, planes, stride)
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))


class CifarResNet(nn.Module):
    """Stem (16) -> three stages of `n` BasicBlocks (16, 32, 64; stride 2 between) -> global pool -> linear."""

    def __init__(self, n: int, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, n, 1)
        self.layer2 = self._stage(32, n, 2)
        self.layer3 = self._stage(64, n, 2)
        self.linear = nn.Linear(64, num_classes)

    def _stage(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet20(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """akamaster ResNet-20 (3 blocks per stage)."""
    return CifarResNet(3, num_classes, in_chans)


def resnet32(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """akamaster ResNet-32 (5 blocks per stage)."""
    return CifarResNet(5, num_classes, in_chans)


def resnet44(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """akamaster ResNet-44 (7 blocks per stage)."""
    return CifarResNet(7, num_classes, in_chans)


def resnet56(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """akamaster ResNet-56 (9 blocks per stage)."""
    return CifarResNet(9, num_classes, in_chans)
