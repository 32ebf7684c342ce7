"""Ctrl-C on a running `compressor prune`: one line, exit 130, no traceback, and its resume hint works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import run_cli, untrained_digits_checkpoint

REPO = Path(__file__).resolve().parents[2]
PRUNE = ["-m", "tscnc", "--sparsity", "0.5", "--epochs-prune", "3", "--epochs-finetune", "1", "--steps", "2",
         "--val-n", "64", "--eval-n", "40", "--device", "cpu"]


def _default_sigint() -> None:
    """A test run started in the background by a non-interactive shell ignores SIGINT, and so would the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_sigint_during_prune_exits_with_one_line_and_resume_continues(tmp_path):
    dense = untrained_digits_checkpoint(tmp_path)
    out = tmp_path / "pruned.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    env.pop("COMPRESSOR_PROGRESS", None)  # stderr is a pipe: plain lines, no bars
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "prune", str(dense), "-o", str(out), *PRUNE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=_default_sigint)
    seen = []
    try:
        for line in proc.stderr:  # the first finished epoch's line: the run is busy in the next one
            seen.append(line)
            if line.startswith("epoch 1/"):
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        stdout = proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any(s.startswith("epoch 1/") for s in seen), "".join(seen)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest and stdout == ""
    lines = [s for s in rest.splitlines() if s.strip()]
    assert lines == ["interrupted: the run continues from its last finished epoch when rerun with --resume"], rest
    assert not out.exists()  # nothing half-done was written
    states = sorted(p.name for p in tmp_path.glob("pruned.pt*.state"))
    assert states, "no training state kept for --resume"

    res = run_cli("prune", str(dense), "-o", str(out), *PRUNE, "--resume", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "resuming after epoch 1/3" in res.stderr and out.is_file()  # the hint holds: it continues, not restarts
