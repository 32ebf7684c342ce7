"""Models defined outside the zoo: ``--arch PACKAGE.MODULE:CALLABLE`` (a class or factory returning an ``nn.Module``).

Importing runs the module's code, so an import path is only ever followed when the user gave it (on the
command line or in an API call) or passed ``--trust-code``: a checkpoint that merely names one does not
make the tool import it (see `compressor.checkpoint.load_model`).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..budget import MAX_JSON_DEPTH
from ..errors import CompressorError
from ..metadata import check_arch_kwargs
from ..parsing import load_json
from .normalize import Normalize

# PACKAGE.MODULE:CALLABLE (the callable may be dotted, e.g. module:Class.build); registry prefixes are not imports
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
REGISTRY_PREFIXES = ("tv", "timm", "npz")


def is_import_path(name: str | None) -> bool:
    """Whether `name` is ``module:callable`` rather than a zoo name, ``tv:<name>`` or ``timm:<name>``."""
    return bool(name) and bool(_IMPORT_PATH.match(name)) and name.split(":", 1)[0] not in REGISTRY_PREFIXES


def parse_arch_kwargs(text: str | None) -> dict[str, Any]:
    """``--arch-kwargs`` JSON -> a dict (it must be a JSON object)."""
    if text is None or not text.strip():
        return {}
    value = load_json(text, "`arch_kwargs`", MAX_JSON_DEPTH, example='\'{"num_classes": 10}\'')
    if not isinstance(value, dict):
        raise CompressorError(f"`arch_kwargs` must be a JSON object of keyword arguments, not {type(value).__name__}"
                              ": write e.g. '{\"num_classes\": 10}'")
    return check_arch_kwargs(value)


def import_callable(path: str) -> Callable[..., Any]:
    """The object named by ``module:attr`` (the working directory is searched, as ``python -m`` does)."""
    if not is_import_path(path):
        raise CompressorError(f"`arch` '{path}' is not an import path: write PACKAGE.MODULE:CALLABLE, e.g. "
                              "mymodels.cifar:ResNet8")
    module_name, attr = path.split(":", 1)
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # only while importing the module the user named: later imports never come from the working folder
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CompressorError(f"`arch` {path}: cannot import module '{module_name}' ({exc}): check the name, run "
                              "from the folder that holds it, or add that folder to PYTHONPATH") from None
    except Exception as exc:  # the module itself fails while importing
        raise CompressorError(f"`arch` {path}: importing '{module_name}' failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}): fix the module") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            shown = ", ".join(public[:8]) + (", ..." if len(public) > 8 else "")
            raise CompressorError(f"`arch` {path}: '{module_name}' has no '{attr}'"
                                  f"{f' (it defines {shown})' if shown else ''}: check the name after the colon")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CompressorError(f"`arch` {path} names a {type(obj).__name__}, not a class or function: name the "
                              "class or factory that builds the model")
    return obj


class Normalized(nn.Module):
    """A model behind an explicit input normalisation: children `normalize`, then `model`; takes [0, 1] pixels."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def user_name(model: nn.Module, name: str) -> str:
    """A layer or key name as the user's own model spells it: without the ``model.`` of our `Normalized` wrapper."""
    return name.removeprefix("model.") if isinstance(model, Normalized) else name


def build_imported(path: str, kwargs: dict[str, Any] | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> nn.Module:
    """Call the class or factory at `path` with `kwargs`; with `mean`/`std`, put a `Normalize` in front."""
    factory = import_callable(path)
    kwargs = dict(kwargs or {})
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise CompressorError(f"`arch` {path} rejected `arch_kwargs` {json.dumps(kwargs)}: {exc}: pass the "
                              "keyword arguments it takes") from None
    except Exception as exc:
        raise CompressorError(f"`arch` {path} failed while building the model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}): check `arch_kwargs`") from None
    if not isinstance(model, nn.Module):
        raise CompressorError(f"`arch` {path} returned a {type(model).__name__}, not a torch.nn.Module: name the "
                              "class or factory that builds the model")
    if (mean is None) != (std is None):
        raise CompressorError("pass `mean` and `std` together (or `no_normalize`)")
    return Normalized(model, mean, std) if mean is not None else model
