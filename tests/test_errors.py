"""Library errors speak the library's language: options by their Python names, never command-line flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from compressor import TrainConfig, load_model
from compressor.errors import CompressorError
from compressor.cli.options import flag_for
from pruners import make_pruner
from tests.conftest import cli

REPO = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
CLI_MODULES = ("compressor/cli/", "pruners/cli.py", "exporters/cli/")
PENDING: set[str] = set()  # modules whose messages still name flags (none left)


def _error_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant inside a raise or a CompressorError(...) call."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        target = node.exc if isinstance(node, ast.Raise) else node if (
            isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith("Error")) else None
        if target is None:
            continue
        found += [(c.lineno, c.value) for c in ast.walk(target) if isinstance(c, ast.Constant)
                  and isinstance(c.value, str)]
    return found


def test_no_flag_in_an_error_raised_outside_the_cli():
    offenders = []
    for root in ("compressor", "pruners", "exporters"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(CLI_MODULES) or rel in PENDING:
                continue
            offenders += [f"{rel}:{no}: {text!r}" for no, text in _error_strings(path) if FLAG.search(text)]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("call, option", [
    (lambda: make_pruner("magnitude", sparsity=1.5), "sparsity"),
    (lambda: make_pruner("magnitude", allocation="nope"), "allocation"),
    (lambda: TrainConfig(adv="nope").validate(), "adv"),
    (lambda: load_model("/nonexistent/model.pt2"), None),
])
def test_api_errors_name_fields_not_flags(call, option):
    with pytest.raises(CompressorError) as exc:
        call()
    msg = str(exc.value)
    assert not FLAG.search(msg), msg
    if option is not None:
        assert f"`{option}`" in msg and option in exc.value.options


def test_the_cli_shows_the_same_error_with_flags(capsys, tmp_path):
    code, _, err = cli(capsys, "prune", str(tmp_path / "missing.pt"), "--method", "tscnc", "--lambda", "-1")
    assert code == 2 and err.startswith("error: ") and "`" not in err.split("error: ", 1)[1].split(":")[0]
    assert flag_for("trust_pickle") == "--trust-pickle"
    exc = CompressorError("pass `mean` and `std` together (or `no_normalize`)")
    assert exc.render(flag_for) == "pass --mean and --std together (or --no-normalize)"
    assert str(exc) == "pass `mean` and `std` together (or `no_normalize`)"
