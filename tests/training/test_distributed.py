import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from compressor.checkpoint import load_model

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp_run(tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "compressor", "train", "--arch", "cnn-small",
           "--dataset", "digits", "--epochs", "2", "--adv", "trades", "--steps", "3", "--batch-size", "64",
           "--device", "cpu", "-o", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["world_size"] == 2 and report["best_epoch"] >= 1
    loaded = load_model(out)
    assert loaded.checkpoint.provenance["metrics"]["val_clean_acc"] > 0.15
    x = torch.rand(2, 1, 8, 8)
    assert loaded.model.eval()(x).shape == (2, 10)
    assert not (tmp_path / "ddp.pt.state").exists()
