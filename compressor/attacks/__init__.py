"""Attack registry and the fast batched attacks used by training and evaluation."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..errors import CompressorError
from ..registry import ATTACKS
from .core import fgsm, pgd, project, random_init
from .losses import LOSSES, ce_loss, cw_margin_loss, kl_loss

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


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (one step of size eps, no random start)."""

    name = "fgsm"
    suffix_option = None

    def __init__(self, eps: float, norm: str = "linf", loss: str = "ce"):
        super().__init__(eps, norm, loss=loss)

    def __call__(self, model, x, y):
        return fgsm(model, x, y, eps=self.eps, norm=self.norm, loss=self.options["loss"])


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected gradient descent with random start; ``pgdN`` runs N steps, ``pgdNxR`` adds R restarts."""

    name = "pgd"
    default_loss = "ce"
    default_steps = 20

    def __init__(self, eps: float, norm: str = "linf", steps: int | None = None, restarts: int = 1,
                 alpha: float | None = None, loss: str | None = None):
        steps = self.default_steps if steps is None else steps
        if steps < 1 or restarts < 1:
            raise CompressorError(f"{self.name} needs steps >= 1 and restarts >= 1, got {steps} and {restarts}")
        alpha = 2.5 * eps / steps if alpha is None else alpha
        super().__init__(eps, norm, steps=steps, restarts=restarts, alpha=alpha, loss=loss or self.default_loss)

    def __call__(self, model, x, y):
        o = self.options
        return pgd(model, x, y, eps=self.eps, alpha=o["alpha"], steps=o["steps"], norm=self.norm,
                   loss=o["loss"], restarts=o["restarts"])


@ATTACKS.register("cw")
class CW(PGD):
    """PGD on the Carlini-Wagner margin loss (L-inf, 30 steps by default; ``cwN`` for N steps)."""

    name = "cw"
    default_loss = "cw"
    default_steps = 30


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


from . import autoattack  # noqa: E402  (registers the pyautoattack-backed attacks; needs Attack above)
from .autoattack import APGD, APGDDLR, APGDT, FABT, AutoAttackSuite, ReferenceAttack, Square  # noqa: E402
from .guards import check_logits, gradient_warning, logits_fn, preserved_rng  # noqa: E402
from .masking import masking_warnings  # noqa: E402  (needs FGSM, PGD and AutoAttackSuite above)

__all__ = ["APGD", "APGDDLR", "APGDT", "Attack", "AutoAttackSuite", "CW", "FABT", "FGSM", "LOSSES", "PGD",
           "ReferenceAttack", "Square", "build_attack", "ce_loss", "check_logits", "cw_margin_loss", "fgsm",
           "gradient_warning", "kl_loss", "logits_fn", "masking_warnings", "pgd", "preserved_rng", "project",
           "random_init", "register_attack"]
