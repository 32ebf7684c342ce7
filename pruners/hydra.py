"""HYDRA (Sehwag et al., NeurIPS 2020; reference code inspire-group/hydra): learned importance scores S, forward
weight W ⊙ TopK(|S|) with a straight-through gradient; prune phase (conv/linear weights and biases frozen, scores
trained), then fine-tune (scores frozen).

Defaults and their source (the reference, inspire-group/hydra, and Sehwag et al. section 4):
- allocation per layer (`allocation` layer): TopK(|S|, k) keeps the same fraction in every layer, the first conv and
  the last linear layer included. `allocation` global is offered for matched comparisons, but it is not HYDRA's:
  the scaled initialisation rescales every layer's scores by sqrt(6 / fan_in) / max|W_l|, so one global threshold
  on |S| is not global magnitude pruning.
- the score search (prune phase) runs 20 epochs in the reference, SGD lr 0.1 (`default_lr`), cosine schedule
  (the Trainer's default), momentum 0.9, weight decay 1e-4 (`default_weight_decay`) on the scores. `prune`'s
  `epochs_prune` default (10) is not the reference's 20: pass 20 for the reference's search; the benchmark uses
  at least 10. Weight decay on the scores cannot stall the search: it scales every score of a layer by the same
  factor, which leaves each per-layer (and the global) top-k unchanged; only the gradient sign(S) * W * dL/dW_eff
  reorders them (on a trained digits model about 1 % of the kept weights change in 8 steps at lr 0.1, with or
  without the decay; an untrained one barely moves, its gradients being tiny).
- BatchNorm affine parameters stay trainable during the score search unless `freeze_bn` (the reference's
  `freeze_vars(..., freeze_bn)` skips BN layers by default); conv/linear weights and biases are frozen.
- fine-tune lr 0.01 (the reference: 100 epochs); scaled score initialisation (the first mask is per-layer
  magnitude pruning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from compressor.errors import CompressorError

from . import register_pruner
from .base import Pruner
from .config import PrunerConfig, option

SCORE_INITS = ("scaled", "kaiming")


def init_scores(weights: list[torch.Tensor], how: str = "scaled", seed: int = 0) -> list[torch.Tensor]:
    """scaled: S = sqrt(6 / fan_in) * W / max|W| per layer (the first mask is per-layer magnitude pruning);
    kaiming: uniform in +-sqrt(6 / fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for w in weights:
        w = w.detach()
        bound = math.sqrt(6.0 / (w[0].numel()))
        if how == "scaled":
            out.append(bound * w / w.abs().max().clamp_min(1e-30))
        else:
            out.append(((torch.rand(w.shape, generator=gen) * 2 - 1) * bound).to(w))
    return out


@dataclass
class HydraConfig(PrunerConfig):
    """HYDRA's settings on top of the shared ones."""

    score_init: str = option("scaled", "score initialisation, scaled (sqrt(6/fan_in) * W / max|W|: the "
                                       "first mask is magnitude pruning) or kaiming (random).", choices=SCORE_INITS)
    freeze_bn: bool = option(False, "also freeze BatchNorm affine parameters during the score search (HYDRA's "
                                    "--freeze-bn; by default they train, as in the reference).")

    def validate(self) -> None:
        super().validate()
        if self.score_init not in SCORE_INITS:
            raise CompressorError(f"unknown `score_init` '{self.score_init}': choose scaled or kaiming")


@register_pruner()
class HydraPruner(Pruner):
    """HYDRA: learned scores, top-k with a straight-through gradient; weights frozen while pruning."""

    name = "hydra"
    Config = HydraConfig
    config: HydraConfig
    default_lr = (0.1, 0.01)  # scores in the prune phase, weights in the fine-tune phase (HYDRA's values)
    default_weight_decay = 1e-4  # HYDRA's
    needs_prune_phase = True

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self._frozen: list[torch.nn.Parameter] = []
        self._group: dict | None = None  # the scores' group in a bound optimizer (plain loops)
        self._ramp = None

    @property
    def hard(self) -> bool:
        return not self.pruning

    def scores(self):
        return [s.detach().abs() for s in self.layers.scores]

    def start_phase(self, phase) -> None:
        super().start_phase(phase)
        if self.pruning:
            if not self.layers.scores:
                self.layers.set_scores(init_scores(self.layers.effective(), self.config.score_init, self.seed))
            keep = {id(s) for s in self.layers.scores}
            if not self.config.freeze_bn:
                keep |= {id(p) for m in self.layers.model.modules() if isinstance(m, _BatchNorm)
                         for p in m.parameters(recurse=False)}
            self._frozen = [p for p in self.layers.model.parameters() if p.requires_grad and id(p) not in keep]
            for p in self._frozen:
                p.requires_grad_(False)
            if self.optimizer is not None and self._group is None:
                self.optimizer.add_param_group({"params": list(self.layers.scores)})
                self._group = self.optimizer.param_groups[-1]
        elif self.layers.scores:  # leaving the prune phase: the scores' final top-k becomes a hard mask
            masks = self.compute_masks(self.scores())
            self._release()
            self.layers.set_masks(masks, self.optimizer)
            self.at_target = True

    def _release(self) -> None:
        if self._group is not None and self.optimizer is not None:
            for s in self._group["params"]:
                self.optimizer.state.pop(s, None)
            self.optimizer.param_groups.remove(self._group)
        self._group = None
        self.layers.set_scores(None)
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []

    def param_groups(self):
        if not self.pruning:
            return None
        frozen = {id(p) for p in self._frozen}
        scores = {id(s) for s in self.layers.scores}
        others = [p for p in self.layers.model.parameters()
                  if p.requires_grad and id(p) not in frozen and id(p) not in scores]  # BatchNorm, unless frozen
        return [{"params": [*self.layers.scores, *others]}]

    def schedule_point(self, pos: int, move: bool = True) -> None:
        """The TopK target follows the schedule; the masks follow the scores at every step anyway."""
        length, span = self.schedule_units()
        t = self.schedule.fraction(pos, length, span)
        self._ramp = self.schedule.ramp_to(t)
        self._refresh()
        self.at_target = t >= 1.0

    def _refresh(self) -> None:
        """Masks = TopK(|S|) at the current target; the stored weights are left alone (they are frozen)."""
        self.layers.set_masks(self.compute_masks(self.scores(), self._ramp), zero_weights=False)

    def after_step(self) -> None:
        if self.pruning:
            self._refresh()
        else:
            super().after_step()

    def final_masks(self):
        if self.layers.scores:
            masks = self.compute_masks(self.scores())
            self._release()
            return masks
        return super().final_masks()
