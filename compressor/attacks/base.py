"""What every attack is: the `Attack` interface, its registration, and `build_attack` from a name like ``pgd20``."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..errors import CompressorError
from ..registry import ATTACKS

register_attack = ATTACKS.register


class Attack:
    """A configured attack: ``attack(model, x, y)`` returns adversarial images in [0, 1]."""

    name = "attack"
    white_box = True  # False: needs only x -> logits queries (any callable model)
    seeded = False  # True: takes a `seed` (build_attack passes the evaluation's)
    suffix_option: str | None = "steps"  # what the number in ``name<N>`` sets (None: no number allowed)

    def __init__(self, eps: float, norm: str = "linf", **options: Any):
        self.eps = float(eps)
        self.norm = norm
        self.options = options

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def protocol(self) -> dict:
        """Everything needed to reproduce this attack's numbers."""
        return {"attack": self.name, "norm": self.norm, "eps": self.eps, **self.options}


_SPEC = re.compile(r"^(?P<name>[a-z][a-z_-]*?)(?P<steps>\d+)?(?:x(?P<restarts>\d+))?$")


def build_attack(spec: str, eps: float, norm: str = "linf", *, seed: int | None = None, **overrides: Any) -> Attack:
    """Build an attack from a name such as ``fgsm``, ``pgd20``, ``pgd50x5``, ``cw``, ``apgd-ce``, ``square1000``
    or ``aa``; `seed` reaches the attacks that take one (the pyautoattack-backed ones)."""
    spec = spec.strip().lower()
    if spec in ATTACKS:
        cls, extra = ATTACKS.get(spec), {}
    else:
        m = _SPEC.match(spec)
        if not m or m.group("name") not in ATTACKS.names() or m.group("steps") is None:
            base = m.group("name") if m else spec
            raise CompressorError(ATTACKS.unknown_message(base, spec[len(base):]))
        cls = ATTACKS.get(m.group("name"))
        option = getattr(cls, "suffix_option", "steps")
        if option is None:
            raise CompressorError(f"attack '{m.group('name')}' takes no step count: write '{m.group('name')}'")
        extra = {option: int(m.group("steps"))}
        if m.group("restarts"):
            extra["restarts"] = int(m.group("restarts"))
    if seed is not None and getattr(cls, "seeded", False):
        extra["seed"] = seed
    try:
        attack = cls(eps=eps, norm=norm, **{**extra, **overrides})
    except TypeError as exc:
        raise CompressorError(f"attack '{spec}' does not take these options: {exc}") from None
    attack.name = spec
    return attack
