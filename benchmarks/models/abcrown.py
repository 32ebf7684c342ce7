"""The alpha-beta-CROWN CIFAR-10 ResNets ``resnet2b`` / ``resnet4b`` (the adversarially trained, eps 2/255 models
of Verified-Intelligence/alpha-beta-CROWN, complete_verifier/models/cifar10_resnet/), written from the published
architecture facts so their state dicts load unchanged.

Facts (upstream ``resnet.py``): BasicBlocks without BatchNorm (every conv has a bias); a 3x3 stride-2 stem;
ResNet-2B = stem with 8 channels + one stage of 2 blocks at 16 channels (stride 2); ResNet-4B = stem with 16
channels + two stages of 2 blocks at 32 channels (stride 2 each); a 1x1 conv shortcut where the shape changes;
the head flattens the last map (8x8 for 2B, 4x4 for 4B) into Linear(C*H*W, 100) -> ReLU -> Linear(100, classes).
The models take normalised input: pass the mean and std from ../shared/checkpoints/README.md (the upstream data
loader applies them; they are *not* in the weight file), and they become a `Normalize` module inside, so every
attack works in [0, 1] pixel space.

Use: ``load_model(path, arch="benchmarks.models.abcrown:resnet4b", ...)`` once the CLI takes import paths, or
``resnet4b(mean=..., std=...)`` then ``load_state_dict(torch.load(path, weights_only=True)["state_dict"])``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from compressor.models import Normalize

__all__ = ["ABCrownResNet", "resnet2b", "resnet4b"]


class Block(nn.Module):
    """conv3x3(stride) -> ReLU -> conv3x3, plus the (1x1 conv when the shape changes) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class ABCrownResNet(nn.Module):
    """Stem (3x3, stride 2) -> stages of stride-2 BasicBlock pairs -> flatten 4x4 -> FC 100 -> FC classes."""

    def __init__(self, stem: int, stages: Sequence[int], num_classes: int = 10, in_chans: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, blocks: int = 2):
        super().__init__()
        self.normalize = Normalize(mean if mean is not None else [0.0] * in_chans,
                                   std if std is not None else [1.0] * in_chans)
        self.conv1 = nn.Conv2d(in_chans, stem, 3, stride=2, padding=1)
        cin = stem
        for i, cout in enumerate(stages, 1):
            blocks_ = [Block(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks_))
            cin = cout
        self.stages = len(stages)
        side = 32 >> (1 + len(stages))  # 32x32 input, halved by the stem and by each stage
        self.linear1 = nn.Linear(cin * side * side, 100)
        self.linear2 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(self.normalize(x)))
        for i in range(1, self.stages + 1):
            out = getattr(self, f"layer{i}")(out)
        return self.linear2(F.relu(self.linear1(torch.flatten(out, 1))))


def resnet2b(num_classes: int = 10, in_chans: int = 3, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> ABCrownResNet:
    """alpha-beta-CROWN ResNet-2B (stem 8, one stage at 16 channels); mean/std: the weights' normalisation."""
    return ABCrownResNet(8, [16], num_classes, in_chans, mean, std)


def resnet4b(num_classes: int = 10, in_chans: int = 3, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> ABCrownResNet:
    """alpha-beta-CROWN ResNet-4B (stem 16, two stages at 32 channels); mean/std: the weights' normalisation."""
    return ABCrownResNet(16, [32, 32], num_classes, in_chans, mean, std)
