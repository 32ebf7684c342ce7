"""The akamaster CIFAR-10 ResNets (``resnet20`` ... ``resnet56`` of akamaster/pytorch_resnet_cifar10, the most
common public CIFAR ResNet release), written from the published architecture facts so their state dicts load
unchanged (the files predate BatchNorm's ``num_batches_tracked``: compressor loads them as PyTorch does).

Facts (upstream ``resnet.py``): a 3x3 stem conv (16 channels, no bias) -> BatchNorm -> ReLU; three stages of n
BasicBlocks (conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU) at 16, 32 and 64 channels, the
last two starting with stride 2; the option-A shortcut where the shape changes is parameter-free (stride-2
subsampling, zero-padded channels); global average pooling -> Linear(64, classes). ResNet-20 has n = 3, ResNet-56
n = 9. The models take normalised input and hold no normalisation: pass the mean and std from
../shared/checkpoints/README.md (``--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225``); compressor puts a
`Normalize` in front so every attack works in [0, 1] pixel space.

Use: ``compressor eval resnet20-12fca82f.th --arch benchmarks.models.akamaster:resnet20 --mean ... --std ...``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AkamasterResNet", "resnet20", "resnet32", "resnet44", "resnet56"]


class ShortcutA(nn.Module):
    """Option A: x[:, :, ::2, ::2] with `pad` zero channels on each side (no parameters)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = ShortcutA(cout // 4) if stride != 1 or cin != cout else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class AkamasterResNet(nn.Module):
    """Stem -> three stages of `n` BasicBlocks (16, 32, 64 channels) -> average pool -> Linear."""

    def __init__(self, n: int, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), 1):
            blocks = [BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            cin = cout
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def resnet20(num_classes: int = 10, in_chans: int = 3) -> AkamasterResNet:
    """akamaster ResNet-20 (3 blocks per stage, 0.27 M parameters)."""
    return AkamasterResNet(3, num_classes, in_chans)


def resnet32(num_classes: int = 10, in_chans: int = 3) -> AkamasterResNet:
    """akamaster ResNet-32 (5 blocks per stage)."""
    return AkamasterResNet(5, num_classes, in_chans)


def resnet44(num_classes: int = 10, in_chans: int = 3) -> AkamasterResNet:
    """akamaster ResNet-44 (7 blocks per stage)."""
    return AkamasterResNet(7, num_classes, in_chans)


def resnet56(num_classes: int = 10, in_chans: int = 3) -> AkamasterResNet:
    """akamaster ResNet-56 (9 blocks per stage)."""
    return AkamasterResNet(9, num_classes, in_chans)
