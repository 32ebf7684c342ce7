"""Robust ADMM (Ye et al., ICCV 2019): adversarial training with sum_l rho/2 ||W_l - Z_l + U_l||^2,
Z = Proj_sparse(W + U) and U += W - Z at every update (rho x1.3 each time), then hard-mask retraining."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from compressor.errors import CompressorError

from . import register_pruner
from .base import Pruner
from .config import PrunerConfig, option
from .scores import magnitude_scores


@dataclass
class ADMMConfig(PrunerConfig):
    """Robust ADMM's settings on top of the shared ones."""

    rho: float = option(1e-3, "initial penalty rho.")
    rho_factor: float = option(1.3, "rho is multiplied by this at every Z/U update.")
    updates_per_epoch: int = option(1, "Z/U updates per prune epoch.")

    def validate(self) -> None:
        super().validate()
        if not self.rho > 0 or not self.rho_factor >= 1 or self.updates_per_epoch < 1:
            raise CompressorError(f"--rho must be > 0, --rho-factor >= 1 and --updates-per-epoch >= 1, got "
                                  f"{self.rho}, {self.rho_factor} and {self.updates_per_epoch}")


@register_pruner("admm")
class ADMMPruner(Pruner):
    """Robust ADMM: sparse projection Z, dual U, growing rho; then hard masks and retraining (PGD-AT)."""

    name = "admm"
    Config = ADMMConfig
    config: ADMMConfig
    default_adv = "pgd"  # the ADMM loss is CE(f(x_pgd), y) in the paper
    needs_prune_phase = True
    masks_move_while_pruning = True  # the ADMM phase ends where it converged: keep its last epoch

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.z: list[torch.Tensor] | None = None
        self.u: list[torch.Tensor] | None = None
        self.rho = self.config.rho
        self.admm_steps = 0  # optimiser steps of the ADMM (prune) phase
        self._interval = 1
        self._ramp = None

    @property
    def hard(self) -> bool:
        return not self.pruning

    def scores(self):
        return magnitude_scores(self.layers)  # the hard prune after the ADMM phase keeps the largest |W|

    def epoch_begin(self, epoch: int) -> None:
        if not self.pruning:
            return super().epoch_begin(epoch)
        if self.steps_per_epoch is None:
            raise CompressorError("admm counts its Z/U interval in steps: pass steps_per_epoch= (e.g. len(loader)) "
                                  "to prepare()")
        self._ramp = self.ramp(epoch)
        self._interval = max(1, self.steps_per_epoch // self.config.updates_per_epoch)
        weights = [w.detach() for w in self.layers.effective()]
        if self.z is None:
            self.u = [torch.zeros_like(w) for w in weights]
            self.z = self._project(weights)
        else:  # after --resume the saved Z and U are on the CPU
            self.z = [z.to(w) for z, w in zip(self.z, weights)]
            self.u = [u.to(w) for u, w in zip(self.u, weights)]

    def _project(self, values: list[torch.Tensor]) -> list[torch.Tensor]:
        """Proj_sparse: keep the largest |values| under the allocation, pattern and current target."""
        masks = self.compute_masks([v.abs() for v in values], self._ramp)
        return [v * m for v, m in zip(values, masks)]

    def penalty(self):
        if not self.pruning:
            return None
        terms = [(w - z + u).pow(2).sum() for w, z, u in zip(self.layers.effective(), self.z, self.u)]
        return 0.5 * self.rho * torch.stack(terms).sum()

    def after_step(self) -> None:
        if not self.pruning:
            return super().after_step()
        self.admm_steps += 1
        if self.admm_steps % self._interval == 0:
            with torch.no_grad():
                weights = [w.detach() for w in self.layers.effective()]
                self.z = self._project([w + u for w, u in zip(weights, self.u)])
                self.u = [u + w - z for u, w, z in zip(self.u, weights, self.z)]
            self.rho *= self.config.rho_factor

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({"rho": self.rho, "step": self.admm_steps})
        if self.z is not None:
            state.update({"z": [z.cpu() for z in self.z], "u": [u.cpu() for u in self.u]})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rho, self.admm_steps = float(state["rho"]), int(state["step"])
        self.z, self.u = state.get("z"), state.get("u")
