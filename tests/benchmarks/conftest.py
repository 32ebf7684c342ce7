"""Benchmark scripts are no package: tests import them from their paths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> Iterator[ModuleType]:
    """Import ``benchmarks/<name>.py`` as a module for the duration of a fixture."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def load_helper(name: str) -> Iterator[ModuleType]:
    """Import the helper module ``benchmarks/<name>.py`` as the scripts do (by its own name, with benchmarks/ on the
    path), for the duration of a fixture."""
    import importlib

    added = str(BENCHMARKS) not in sys.path
    if added:
        sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        if added and str(BENCHMARKS) in sys.path:
            sys.path.remove(str(BENCHMARKS))
