"""Weight initialisation shared by the zoo's convolutional networks."""

from __future__ import annotations

from torch import nn


def kaiming_init(model: nn.Module, linear_std: float | None = None) -> None:
    """He (fan-out) convolutions, unit/zero BatchNorm, zero Linear biases; Linear weights ~ N(0, linear_std) if given."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
