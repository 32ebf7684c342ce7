"""Attack registry and the fast batched attacks used by training and evaluation."""

from .base import Attack, build_attack, register_attack
from .core import CW, FGSM, PGD, AttackBudget, fgsm, pgd, project, random_init
from .losses import LOSSES, ce_loss, cw_margin_loss, kl_loss
from .autoattack import APGD, APGDDLR, APGDT, FABT, AutoAttackSuite, ReferenceAttack, Square
from .guards import check_logits, gradient_warning, logits_fn, preserved_rng
from .gradient_masking import masking_warnings

__all__ = ["APGD", "APGDDLR", "APGDT", "Attack", "AttackBudget", "AutoAttackSuite", "CW", "FABT", "FGSM", "LOSSES",
           "PGD", "ReferenceAttack", "Square", "build_attack", "ce_loss", "check_logits", "cw_margin_loss", "fgsm",
           "gradient_warning", "kl_loss", "logits_fn", "masking_warnings", "pgd", "preserved_rng", "project",
           "random_init", "register_attack"]
