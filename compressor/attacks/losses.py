"""Per-sample attack objectives (to be maximised)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_loss(logits: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy per sample."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
    """Carlini-Wagner margin per sample: best wrong logit minus the true logit."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return wrong - true


def kl_loss(logits: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p_ref || p_adv) per sample, ``ref`` being the clean logits (the TRADES inner objective)."""
    if ref is None:
        raise ValueError("the KL loss needs the clean logits as `ref`")
    log_p_adv = F.log_softmax(logits.float(), dim=1)
    p_ref = F.softmax(ref.float(), dim=1)
    return F.kl_div(log_p_adv, p_ref, reduction="none").sum(1)


LOSSES = {"ce": ce_loss, "cw": cw_margin_loss, "kl": kl_loss}
