"""CIFAR ResNet-18 and pre-activation ResNet-18 (3x3 stem, no max pool)."""

from __future__ import annotations

from typing import Sequence, Type

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import MODELS
from .normalize import Normalize


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv; the projection shortcut (1x1 conv) reads the pre-activated input."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.has_projection = stride != 1 or in_planes != planes * self.expansion
        if self.has_projection:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * self.expansion, 1, stride=stride, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.has_projection else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem `conv1`, `layer1..4` (64, 128, 256, 512), global average pool, `linear`.

    With `preact=True` the blocks are pre-activation ones, the stem has no BN and a final `bn` + ReLU
    comes before pooling.
    """

    def __init__(self, block: Type[nn.Module], num_blocks: Sequence[int], num_classes: int = 10,
                 in_chans: int = 3, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 preact: bool = False):
        super().__init__()
        self.normalize = Normalize(mean if mean is not None else [0.0] * in_chans,
                                   std if std is not None else [1.0] * in_chans)
        self.preact = preact
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        if preact:
            self.bn = nn.BatchNorm2d(512 * block.expansion)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: Type[nn.Module], planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        if not self.preact:
            out = F.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.preact:
            out = F.relu(self.bn(out))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


@MODELS.register("resnet18")
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 for CIFAR (3x3 stem, no max pool)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@MODELS.register("preact_resnet18")
def preact_resnet18(**kwargs) -> ResNet:
    """Pre-activation ResNet-18 for CIFAR."""
    return ResNet(PreActBlock, [2, 2, 2, 2], preact=True, **kwargs)
