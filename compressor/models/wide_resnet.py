"""Wide ResNets (Zagoruyko & Komodakis) for CIFAR: WRN-28-4 and WRN-34-10.

Module names follow the reference implementation used by the robust-training literature (TRADES, RST,
HYDRA): `conv1`, `block1..3` (each with a `layer` Sequential of blocks holding `bn1`, `conv1`, `bn2`,
`conv2` and `convShortcut`), final `bn1`, `fc`; so their state dicts load unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import MODELS
from .init import kaiming_init
from .normalize import Normalize


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus an identity or 1x1 shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout(drop_rate)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut = (None if self.equal_in_out
                             else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        out = self.conv2(self.dropout(out))
        # A projection reads the pre-activated input; the identity shortcut reads the raw input.
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return out + shortcut


class NetworkBlock(nn.Module):
    """One group of `n` wide blocks; the first one changes width / resolution."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-`depth`-`widen_factor`: stem conv (16), three groups of (depth-4)/6 blocks (16k, 32k, 64k)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, depth: int = 28, widen_factor: int = 10,
                 drop_rate: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4 (e.g. 16, 22, 28, 34, 40), got {depth}")
        self.normalize = Normalize(mean if mean is not None else [0.0] * in_chans,
                                   std if std is not None else [1.0] * in_chans)
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=False)
        self.fc = nn.Linear(widths[3], num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = self.relu(self.bn1(out))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


@MODELS.register("wrn_28_4")
def wrn_28_4(**kwargs) -> WideResNet:
    """WideResNet-28-4 for CIFAR."""
    kwargs.setdefault("depth", 28)
    kwargs.setdefault("widen_factor", 4)
    return WideResNet(**kwargs)


@MODELS.register("wrn_34_10")
def wrn_34_10(**kwargs) -> WideResNet:
    """WideResNet-34-10 for CIFAR (TRADES / RST scale)."""
    kwargs.setdefault("depth", 34)
    kwargs.setdefault("widen_factor", 10)
    return WideResNet(**kwargs)
