"""Robust ADMM (Ye et al., "Adversarial Robustness vs. Model Compression, or Both?", ICCV 2019; reference code
yeshaokai/Robustness-Aware-Pruning-ADMM): PGD-AT with sum_l rho/2 ||W_l - Z_l + U_l||^2; every ADMM interval
Z = Proj_sparse(W + U), U += W - Z and rho x1.3 (capped); then hard-mask retraining.

Defaults and their source: the reference updates Z/U every 20 epochs of a 200-epoch ADMM phase, i.e. 10 updates;
a shorter phase keeps the 10 updates (`admm_updates`) and scales the interval: update k of n falls on step
round(k * T / n) of the phase's T optimiser steps (so the interval may be a fraction of an epoch, and the last update
ends the phase); a phase of fewer than n steps updates at every step. `admm_interval` (in epochs) replaces the count
by a fixed interval. rho starts at 1e-3 and grows x1.3 per update, never per epoch: grown every
epoch it passes lr * rho > 2 after ~47 epochs at lr 0.01 and the run diverges. It is capped at the value the
reference reaches with its 10 updates (rho * 1.3^10) unless --rho-max says otherwise. lr 0.01 and weight decay
1e-4 as in the reference; PGD examples crafted with BatchNorm in train mode (TrainConfig craft_mode auto).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from compressor.errors import CompressorError

from . import register_pruner
from .base import Pruner
from .config import PrunerConfig, option
from .scores import magnitude_scores

REFERENCE_UPDATES = 10  # 200 ADMM epochs / an update every 20 (Ye et al.'s reference schedule)


@dataclass
class ADMMConfig(PrunerConfig):
    """Robust ADMM's settings on top of the shared ones (defaults from the reference, see the module docstring)."""

    rho: float = option(1e-3, "initial penalty rho (reference: 1e-3).")
    rho_factor: float = option(1.3, "rho is multiplied by this at every Z/U update (reference: 1.3).")
    rho_max: float | None = option(None, "cap on rho (default: rho * rho_factor^10, what the reference reaches with "
                                         "its 10 updates).")
    admm_interval: float | None = option(None, "epochs between Z/U updates, may be fractional (default: "
                                               "--admm-updates spread over the ADMM phase).")
    admm_updates: int | None = option(None, "Z/U updates spread evenly over the ADMM (prune) phase's steps (default: "
                                            "10, the reference's 20 epochs of 200 scaled to the run; fewer when the "
                                            "phase has fewer steps).")

    def validate(self) -> None:
        super().validate()
        if not self.rho > 0 or not self.rho_factor >= 1:
            raise CompressorError(f"`rho` must be > 0 and `rho_factor` >= 1, got {self.rho} and {self.rho_factor}")
        if self.rho_max is not None and not self.rho_max >= self.rho:
            raise CompressorError(f"`rho_max` must be >= `rho` ({self.rho}), got {self.rho_max}")
        if self.admm_interval is not None and not (math.isfinite(self.admm_interval) and self.admm_interval > 0):
            raise CompressorError(f"`admm_interval` must be > 0 epochs, got {self.admm_interval}: e.g. 2, or 0.5")
        if self.admm_updates is not None and (isinstance(self.admm_updates, bool) or
                                              not isinstance(self.admm_updates, int) or self.admm_updates < 1):
            raise CompressorError(f"`admm_updates` must be a whole number >= 1, got {self.admm_updates}",
                                  field="admm_updates")
        if self.admm_updates is not None and self.admm_interval is not None:
            raise CompressorError("give `admm_updates` (a count over the phase) or `admm_interval` (epochs between "
                                  "updates), not both", field="admm_updates")

    @property
    def rho_cap(self) -> float:
        """The largest rho any update may reach."""
        return self.rho_max if self.rho_max is not None else self.rho * self.rho_factor ** REFERENCE_UPDATES


@register_pruner()
class ADMMPruner(Pruner):
    """Robust ADMM: sparse projection Z, dual U, rho grown per interval and capped; then hard masks (PGD-AT)."""

    name = "admm"
    Config = ADMMConfig
    config: ADMMConfig
    default_adv = "pgd"  # the ADMM loss is CE(f(x_pgd), y) in the paper
    default_weight_decay = 1e-4  # the reference's
    needs_prune_phase = True
    masks_move_while_pruning = True  # the ADMM phase ends where it converged: keep its last epoch

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.z: list[torch.Tensor] | None = None
        self.u: list[torch.Tensor] | None = None
        self.rho = self.config.rho
        self.admm_steps = 0  # optimiser steps of the ADMM (prune) phase
        self.zu_updates = 0  # Z/U updates done
        self._updates: set[int] = set()  # the ADMM phase's steps that end with a Z/U update
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
        super().epoch_begin(epoch)  # the projection's target (`schedule_point`)
        self._updates = self.update_steps()
        weights = [w.detach() for w in self.layers.effective()]
        if self.z is None:
            self.u = [torch.zeros_like(w) for w in weights]
            self.z = self._project(weights)
        else:  # after --resume the saved Z and U are on the CPU
            self.z = [z.to(w) for z, w in zip(self.z, weights)]
            self.u = [u.to(w) for u, w in zip(self.u, weights)]

    def schedule_point(self, pos: int, move: bool = True) -> None:
        """The projection's target follows the schedule (the masks stay dense until the hard prune)."""
        self._ramp = self.ramp(pos)

    def update_steps(self) -> set[int]:
        """The steps of this ADMM phase (1-based) after which Z and U are updated."""
        total = self.phase.epochs * self.steps_per_epoch
        if self.config.admm_interval is not None:
            every = max(1, round(self.config.admm_interval * self.steps_per_epoch))
            return set(range(every, total + 1, every))
        n = min(self.config.admm_updates or REFERENCE_UPDATES, total)
        return {round(k * total / n) for k in range(1, n + 1)}

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
        if self.admm_steps in self._updates:
            with torch.no_grad():
                weights = [w.detach() for w in self.layers.effective()]
                self.z = self._project([w + u for w, u in zip(weights, self.u)])
                self.u = [u + w - z for u, w, z in zip(self.u, weights, self.z)]
            self.rho = min(self.rho * self.config.rho_factor, self.config.rho_cap)
            self.zu_updates += 1

    def epoch_metrics(self) -> dict[str, Any]:
        return {**super().epoch_metrics(), "admm_updates": self.zu_updates, "rho": self.rho}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "admm_updates": self.zu_updates, "rho": self.rho}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({"rho": self.rho, "step": self.admm_steps, "zu_updates": self.zu_updates})
        if self.z is not None:
            state.update({"z": [z.cpu() for z in self.z], "u": [u.cpu() for u in self.u]})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rho, self.admm_steps = float(state["rho"]), int(state["step"])
        self.zu_updates = int(state.get("zu_updates", 0))
        self.z, self.u = state.get("z"), state.get("u")
