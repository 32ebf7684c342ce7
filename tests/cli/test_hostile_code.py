"""No code from a file through the command line: each crafted .pt2 route through inspect and eval (and one through
every command that reads a model), a crafted AOTInductor engine given to bench, and a plugin folder in the working
directory. Each exits 2 with one `error:` line, no traceback, nothing changed on disk and no marker file."""

from __future__ import annotations

import os

import pytest

from compressor.checkpoint import save_checkpoint
from compressor.workflows import model_kwargs

from ..conftest import cli, run_cli
from ..test_no_code import CRAFTS, ROUTES, _plugin, _rewrite, evil_aoti_package, export_program
from .test_hostile import R, _check

TRUST = r"\.pt2 program, and loading one can run code from the file: pass --trust-program only if you trust"


@pytest.fixture(scope="module")
def ws(digits, tmp_path_factory):
    """A program, every crafted variant of it (payloads create `ran`), a checkpoint and a crafted AOTI engine."""
    root = tmp_path_factory.mktemp("hostile-code")
    ok, model, _ = export_program(root, digits.info)
    for craft, make in {**CRAFTS, **ROUTES}.items():
        _rewrite(ok, root / f"{craft}.pt2", make(str(root / "ran")))
    kwargs = {**model_kwargs(digits.info), "width": 4, "hidden": 8}
    save_checkpoint(root / "tiny.pt", model, arch="cnn-small", arch_kwargs=kwargs, dataset=digits.info.as_dict())
    evil_aoti_package(root / "engine.pt2", root / "ran")
    return root


@pytest.mark.parametrize("command", ["inspect", "eval"])
@pytest.mark.parametrize("craft", sorted(ROUTES))
def test_second_audit_routes_run_nothing(ws, capsys, craft, command):
    extra = ["--dataset", "digits", "--attacks", "fgsm", "--n", "4"] if command == "eval" else []
    _check(capsys, ws, [command, f"{R}/{craft}.pt2", *extra], f"{craft}.pt2 is a {TRUST}")


@pytest.mark.parametrize("argv", [
    ["export", f"{R}/sympy-shape-expression.pt2", "-f", "onnx", "-o", f"{R}/out.onnx", "--dataset", "digits"],
    ["bench", f"{R}/nul-byte-member.pt2", "--dataset", "digits", "--out", f"{R}/bench"],
    ["bench", f"{R}/tiny.pt={R}/legacy-state-dict.pt2", "--out", f"{R}/bench"],
], ids=["export", "bench-model", "bench-program-as-engine"])
def test_every_command_refuses_an_untrusted_program(ws, capsys, argv):
    pattern = "not an AOTInductor package" if "=" in argv[1] else TRUST
    _check(capsys, ws, argv, pattern)


def test_prune_refuses_a_program_unopened_even_when_trusted(ws, capsys):
    _check(capsys, ws, ["prune", f"{R}/upper-case-program-json.pt2", "-m", "magnitude", "--sparsity", "0.5", "-o",
                        f"{R}/out.pt", "--dataset", "digits", "--trust-program"], "cannot be pruned")


@pytest.mark.parametrize("variants", [[f"{R}/tiny.pt", "--engine", f"{R}/engine.pt2"], [f"{R}/tiny.pt={R}/engine.pt2"]],
                         ids=["--engine", "MODEL=ENGINE"])
def test_bench_refuses_an_untrusted_aoti_engine(ws, capsys, variants):
    _check(capsys, ws, ["bench", *variants, "--attacks", "", "--out", f"{R}/bench"],
           r"engine\.pt2 is an AOTInductor package, and loading one runs the native code it holds: pass "
           "--trust-program only if you trust")


def test_aoti_package_as_a_model_is_refused(ws, capsys):
    _check(capsys, ws, ["inspect", f"{R}/engine.pt2", "--trust-program"], "AOTInductor package .*MODEL=ENGINE")


def test_trusted_program_evaluates_and_inspects(ws, capsys):
    code, out, err = cli(capsys, "eval", str(ws / "ok.pt2"), "--trust-program", "--dataset", "digits", "--attacks",
                         "fgsm", "--n", "16", "--json")
    assert code == 0 and '"clean_accuracy"' in out, err
    code, out, err = cli(capsys, "inspect", str(ws / "ok.pt2"), "--trust-program", "--json")
    assert code == 0 and '"source": "exported"' in out, err


def test_plugin_in_the_working_directory_is_never_loaded(tmp_path):
    marker = tmp_path / "ran"
    here = _plugin(tmp_path / "project", marker)
    before = sorted(p.name for p in here.iterdir())
    res = run_cli("inspect", "missing.pt", cwd=here)  # `python -m compressor`: the cwd is sys.path[0]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "does not exist" in lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    res = run_cli("list", "models", cwd=here)
    assert res.returncode == 0 and "evil" not in res.stdout, res.stderr
    assert not marker.exists() and sorted(p.name for p in here.iterdir()) == before
    # the craft is real: the same distribution on an absolute sys.path entry (installed, as plugins are) loads
    path = os.pathsep.join(p for p in (str(here), os.environ.get("PYTHONPATH", "")) if p)
    res = run_cli("list", "models", cwd=tmp_path, env={"PYTHONPATH": path})
    assert res.returncode == 0 and marker.exists(), res.stderr

