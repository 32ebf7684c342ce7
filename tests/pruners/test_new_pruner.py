"""A new pruner is two places: its module and the import that registers it. Written here as a row-weighted magnitude
pruner with its own Config (a module file, then its import), it shows in `compressor list pruners`, its option in
`prune --help`, and `compressor prune MODEL --method row-l1-test` prunes a digits model end to end.

The commands run in a fresh process that first imports the module, as ``pruners/__init__.py``'s import line would:
the prune command builds its options from the pruners registered when it is first imported, so a fresh process
sees the new pruner exactly as an installed one, whichever tests ran before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from compressor.checkpoint import save_checkpoint
from compressor.models import create_model
from compressor.workflows import model_kwargs

REPO = Path(__file__).resolve().parents[2]
NAME = "row-l1-test"

MODULE = '''
"""Row-weighted magnitude: |w| plus `row_weight` times the mean |w| of its output row; test plugin."""

from dataclasses import dataclass

from compressor.errors import CompressorError
from pruners import register_pruner
from pruners.base import Pruner
from pruners.config import PrunerConfig, option


@dataclass
class RowL1Config(PrunerConfig):
    """Magnitude settings plus the weight of each row's mean |w|."""

    row_weight: float = option(1.0, "Weight of the mean |w| of a weight's output row, added to its |w| (0: plain "
                                    "magnitude).")

    def validate(self):
        super().validate()
        if not self.row_weight >= 0:
            raise CompressorError(f"`row_weight` must be >= 0, got {self.row_weight}")


@register_pruner()
class RowL1Pruner(Pruner):
    """Keep weights that are large or sit in a row of large weights; test plugin."""

    name = "row-l1-test"
    Config = RowL1Config

    def scores(self):
        out = []
        for w, m in zip(self.layers.effective(), self.layers.masks):
            a = w.detach().abs()
            row = a.flatten(1).mean(1).view(-1, *[1] * (a.dim() - 1))
            out.append((a + self.config.row_weight * row) * m)  # removed weights stay removed
        return out
'''

# runs each command line of argv[1] (a JSON list) through `compressor`'s main, after the import that registers the
# pruner; prints [{code, out, err}, ...]
RUNNER = '''
import contextlib, io, json, sys

import row_l1_test_pruner  # noqa: F401  (place two: the import that registers it)
from compressor.cli import main

results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
'''


def run_with_new_pruner(tmp_path: Path, *commands: list[str]) -> list[dict]:
    """Place one: the pruner's module; then each command in a process that imports it first."""
    (tmp_path / "row_l1_test_pruner.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "run_cli.py").write_text(textwrap.dedent(RUNNER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(tmp_path / "run_cli.py"), json.dumps(commands)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_new_pruner_is_listed_offered_and_prunes(digits, tmp_path):
    torch.manual_seed(0)
    kwargs = {**model_kwargs(digits.info), "width": 8, "hidden": 32}
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=digits.info.as_dict())
    out = tmp_path / "tiny.row.pt"
    tiny = ["--epochs-prune", "1", "--epochs-finetune", "0", "--adv", "none", "--batch-size", "128", "--val-n", "32",
            "--eval-n", "32", "--eval-attack", "fgsm", "--device", "cpu"]
    listed, helped, pruned, refused = run_with_new_pruner(
        tmp_path,
        ["list", "pruners", "--json"],
        ["prune", "--help"],
        ["prune", str(ckpt), "--method", NAME, "--sparsity", "0.5", "--row-weight", "0.5", *tiny, "-o", str(out),
         "--json"],
        ["prune", str(ckpt), "--method", "magnitude", "--sparsity", "0.5", "--row-weight", "0.5", *tiny, "-o",
         str(tmp_path / "refused.pt")])

    assert listed["code"] == 0, listed["err"]
    entry = next(e for e in json.loads(listed["out"])["pruners"] if e["name"] == NAME)
    assert "row of large weights" in entry["description"]

    assert helped["code"] == 0, helped["err"]
    assert "--row-weight" in helped["out"] and f"[{NAME}]" in helped["out"]

    assert pruned["code"] == 0, pruned["err"]
    report = json.loads(pruned["out"])
    assert report["method"] == NAME and report["config"]["row_weight"] == 0.5
    assert abs(report["sparsity_achieved"] - 0.5) < 0.02
    saved = torch.load(out, weights_only=True)
    assert any(e.get("name") == NAME for e in saved["compression"])

    # its option belongs to it: another method refuses it before anything runs
    assert refused["code"] == 2 and "--row-weight" in refused["err"] and NAME in refused["err"]
    assert not (tmp_path / "refused.pt").exists()
