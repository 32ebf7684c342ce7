"""Robustness-aware pruners and structural transforms; each registers in `compressor.registry`.

Built-in pruners: magnitude, hydra, tscnc, admm, random, arlst (a preset: separable layers + HYDRA + h(A)) and
none (transforms alone). A pruner is a loop-agnostic `Pruner` with a typed config (prepare / start_phase /
epoch_begin / regularizer / step / squash_mask: see `pruners.base`), usable in any training loop; `prune` runs one
on a checkpoint and `prune_model` on a model in memory, both through our Trainer via the thin `PrunerCallback`
adapter.
Third-party pruners register through the ``compressor.pruners`` entry-point group and transforms
through ``compressor.transforms``.
"""

from compressor.registry import PRUNERS, TRANSFORMS

register_pruner = PRUNERS.register
register_transform = TRANSFORMS.register

from .allocation import Allocator  # noqa: E402  (the built-ins below need register_pruner)
from .base import Phase, Pruner, build_config  # noqa: E402
from .callback import PrunerCallback  # noqa: E402
from .config import PrunerConfig, option  # noqa: E402
from .masking import MaskedLayers, WeightMask, finalize, is_masked  # noqa: E402
from .report import PruneReport  # noqa: E402
from .monitor import ConditionTracker, condition_summary  # noqa: E402
from .schedules import Schedule  # noqa: E402
from .scores import ScoreSource, adversarial_ce  # noqa: E402
from . import admm, arlst, hydra, magnitude, random_pruner, tscnc  # noqa: E402,F401  (register the built-ins)
from . import no_pruning, transforms  # noqa: E402,F401  (`--method none` and the transforms)
from .job import LoopOptions, PhasePlan, PruneEval, PruneJob, SizeTarget  # noqa: E402
from .workflow import make_pruner, prune, prune_model  # noqa: E402

__all__ = ["PRUNERS", "TRANSFORMS", "register_pruner", "register_transform", "Allocator", "ConditionTracker",
           "LoopOptions", "MaskedLayers", "PhasePlan", "PruneEval", "PruneJob", "Phase", "PruneReport", "Pruner", "PrunerCallback", "PrunerConfig", "Schedule",
           "ScoreSource", "SizeTarget", "WeightMask", "adversarial_ce", "build_config", "condition_summary", "finalize", "is_masked", "make_pruner",
           "option", "prune", "prune_model"]
