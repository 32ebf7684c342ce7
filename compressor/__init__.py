"""compressor: compact, adversarially robust networks and deployable engines.

The public API; the `compressor` command line is a thin layer over these names.
"""

from .analysis import condition_number, layer_stats, model_summary
from .attacks import Attack, build_attack, fgsm, pgd
from .checkpoint import Checkpoint, LoadedModel, load_model, make_provenance, save_checkpoint
from .data import ArraySplit, BatchLoader, DataBundle, DatasetInfo, list_datasets, load_dataset
from .errors import CompressorError, UnknownNameError
from .evaluation import AttackResult, Evaluation, evaluate
from .flops import count_macs, size_report
from .models import Normalize, create_model, list_models
from .parsing import parse_eps
from .registry import ATTACKS, DATASETS, EXPORTERS, MODELS, PRUNERS, REGISTRIES, TRANSFORMS, Registry, get_registry
from .training import Callback, TrainConfig, Trainer, TrainResult, trades_loss
from .workflows import evaluate_model, model_kwargs, open_model, train

__version__ = "0.1.0"

__all__ = [
    "ATTACKS", "ArraySplit", "Attack", "AttackResult", "BatchLoader", "Callback", "Checkpoint", "CompressorError",
    "DATASETS", "DataBundle", "DatasetInfo", "EXPORTERS", "Evaluation", "LoadedModel", "MODELS", "Normalize", "PRUNERS",
    "REGISTRIES",
    "Registry", "TRANSFORMS", "TrainConfig", "TrainResult", "Trainer", "UnknownNameError", "build_attack",
    "condition_number", "count_macs", "create_model", "evaluate", "evaluate_model", "fgsm", "get_registry",
    "layer_stats", "list_datasets", "list_models", "load_dataset", "load_model", "make_provenance", "model_kwargs",
    "model_summary", "open_model", "parse_eps", "pgd", "save_checkpoint", "size_report", "trades_loss", "train",
]
