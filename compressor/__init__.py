"""compressor: compact, adversarially robust networks and deployable engines.

The public API; the `compressor` command line is a thin layer over these names. They are imported on first use
(PEP 562), so that ``compressor --help`` and other light uses do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# module -> the public names it provides
_API: dict[str, tuple[str, ...]] = {
    "analysis": ("condition_number", "layer_stats", "model_summary"),
    "attacks": ("Attack", "AttackBudget", "build_attack", "fgsm", "pgd"),
    "checkpoint": ("Checkpoint", "LoadedModel", "load_model", "make_provenance", "save_checkpoint"),
    "data": ("ArraySplit", "BatchLoader", "DataBundle", "DatasetInfo", "list_datasets", "load_dataset"),
    "errors": ("CompressorError", "UnknownNameError"),
    "evaluation": ("AttackResult", "Evaluation", "evaluate"),
    "flops": ("count_macs", "size_report"),
    "jobs": ("DataSource", "EvalOptions", "ModelSource", "RunOptions", "TrainJob"),
    "models": ("Normalize", "create_model", "list_models"),
    "parsing": ("parse_eps",),
    "registry": ("ATTACKS", "DATASETS", "EXPORTERS", "MODELS", "PRUNERS", "REGISTRIES", "TRANSFORMS", "Registry",
                 "get_registry"),
    "training": ("Callback", "TrainConfig", "Trainer", "TrainResult", "trades_loss"),
    "workflows": ("evaluate_model", "model_kwargs", "open_model", "train"),
}
_HOME = {name: module for module, names in _API.items() for name in names}

__all__ = sorted(_HOME, key=lambda n: (n.lower(), n))


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is asked for (a submodule by its name, too)."""
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
