"""The layers stay one-way: the import-linter contract in pyproject.toml, and the core imports nothing above it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contract_is_kept():
    pytest.importorskip("importlinter")
    lint = Path(sys.executable).with_name("lint-imports")
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


@pytest.mark.slow
def test_core_use_never_imports_the_upper_layers(tmp_path):
    """Creating, saving, loading and attacking a model touches neither `pruners` nor `exporters`."""
    code = f"""
import sys, torch
import compressor
from compressor import create_model, load_model, save_checkpoint, build_attack, DATASETS, MODELS, load_dataset
from compressor.workflows import model_kwargs
kwargs = model_kwargs(load_dataset("digits").info)
save_checkpoint({str(tmp_path / 'm.pt')!r}, create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs)
load_model({str(tmp_path / 'm.pt')!r})
build_attack("pgd20", 0.1); DATASETS.names(); MODELS.names()
print(sorted({{m.split('.')[0] for m in sys.modules}} & {{"pruners", "exporters"}}))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_core_source_names_no_upper_layer():
    """No import of, nor module string naming, `pruners` / `exporters` anywhere in the core's code."""
    offenders = []
    for path in (REPO / "compressor").rglob("*.py"):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if any(p in code for p in ("import pruners", "import exporters", "from pruners", "from exporters",
                                       '"pruners.', '"exporters.', "'pruners", "'exporters")):
                offenders.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_no_first_party_import_inside_a_function():
    """Imports sit at module level (only optional heavy third-party packages may be imported where used)."""
    import ast

    first_party = ("compressor", "pruners", "exporters")
    found = []
    for root in first_party:
        for path in (REPO / root).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                             else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                    relative = isinstance(node, ast.ImportFrom) and node.level > 0
                    if relative or any(n.split(".")[0] in first_party for n in names):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} in {fn.name}()")
    assert not found, "\n".join(sorted(set(found)))
