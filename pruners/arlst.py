"""ARLST preset (Wei et al., "Learning Extremely Lightweight and Robust Model with Differentiable Constraints on
Sparsity and Condition Number", ECCV 2022; its supplementary material, ../shared/papers/004_*): the supplement's
pipeline as one method.

- Fully connected layers become separable (Kronecker) layers: `prune` adds `--transform separable-linear` when
  it is not given (all Linear layers but the output layer, nearest-Kronecker initialisation).
- The convolutions are pruned with HYDRA and the separable factors with unstructured pruning: HYDRA's learned
  scores cover both (every prunable layer, the factors included).
- The scale-invariant condition regulariser h(A) (supplement Eq. 20) is on in every phase: per separable layer,
  1 / (4 T k log k) * sum over its T factors of (log[nu + det(A^T A) / k])^2, summed over the layers; nu = 1e-3
  (the supplement only asks 0 < nu << 1). The supplement gives no weight for h(A): 1e-3, the TSCNC paper's best
  lambda for its own log-condition term, is the default; choose it on validation data (--cond-reg). The term
  itself is the separable-linear transform's training callback (`transforms.separable.ConditionRegularizer`),
  weighted by this preset's cond_reg.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import register_pruner
from .config import redefault
from .hydra import HydraConfig, HydraPruner


@dataclass
class ARLSTConfig(HydraConfig):
    """HYDRA's settings with h(A) on."""

    cond_reg: float = redefault(HydraConfig, "cond_reg", 1e-3)


@register_pruner()
class ARLSTPruner(HydraPruner):
    """ARLST preset: separable-linear FC layers, HYDRA over convolutions and factors, h(A) summed over layers."""

    name = "arlst"
    Config = ARLSTConfig
    config: ARLSTConfig
    default_transforms = ("separable-linear",)
