"""Signs of gradient masking, read from finished results: a black-box attack beating every white-box one, or
AutoAttack landing well below PGD. Warnings are returned as strings, never printed here."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .core import FGSM, PGD
from .autoattack import AutoAttackSuite

SQUARE_MARGIN = 0.002  # Square more than this below the best white-box attack: suspicious (AutoAttack's own bound)
AA_PGD_GAP = 0.05  # AutoAttack more than this below PGD-20: suspicious (3-4.5 points is typical)


def masking_warnings(results: Mapping[str, Mapping[str, Any]], attacks: Sequence[Any]) -> list[str]:
    """Warnings about signs of gradient masking in finished results (accuracy per attack name).

    Square (black-box) beating every iterative white-box attack, and AutoAttack landing more than 5
    points below PGD-20 (or a stronger PGD), both mean the gradients mislead the white-box attacks.
    """
    acc = {a.name: results[a.name]["accuracy"] for a in attacks if a.name in results}
    # one-step FGSM is no yardstick: a patient black-box search may beat it on a healthy model
    white = [a.name for a in attacks if a.white_box and not isinstance(a, FGSM) and a.name in acc]
    black = [a.name for a in attacks if not a.white_box and a.name in acc]
    out = []
    if white:
        best = min(white, key=acc.get)
        for name in black:
            if acc[name] < acc[best] - SQUARE_MARGIN:
                out.append(f"black-box {name} ({acc[name]:.2%}) beats every white-box attack (best: {best}, "
                           f"{acc[best]:.2%}): signs of gradient masking; the white-box numbers overstate robustness")
    pgds = [a.name for a in attacks if isinstance(a, PGD) and a.name in acc and a.options["loss"] == "ce"
            and a.options["steps"] >= 20]
    if pgds:
        ref = min(pgds, key=acc.get)
        for a in attacks:
            if isinstance(a, AutoAttackSuite) and a.name in acc and acc[ref] - acc[a.name] > AA_PGD_GAP:
                out.append(f"{a.name} ({acc[a.name]:.2%}) lands {100 * (acc[ref] - acc[a.name]):.1f} points below "
                           f"{ref} ({acc[ref]:.2%}), more than {100 * AA_PGD_GAP:.0f}: signs of gradient masking; "
                           "trust the AutoAttack number")
    return out
