"""Shared fixtures: real digits data and small models trained on it (once per test session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from compressor.checkpoint import save_checkpoint
from compressor.data import load_dataset
from compressor.models import create_model
from compressor.training import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# one thread per test process: `make test` runs 2 xdist workers on 2 cores, and a second thread per process
# stalls on every op whenever the other core is busy (PGD-10 on 16 digits: 0.04 s vs 3.2 s).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """The benchmarks' tests run each script end to end on tiny settings: all of them are slow (not in test-fast)."""
    for item in items:
        if item.nodeid.startswith("tests/benchmarks/"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


def train_digits(bundle, adv: str, epochs: int = 8, seed: int = 0, **overrides):
    """A cnn-small trained on digits on the CPU (quietly)."""
    torch.manual_seed(seed)
    info = bundle.info
    model = create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, adv=adv, eps=0.1, steps=7, val_steps=10, seed=seed,
                      device="cpu", **overrides)
    Trainer(model, bundle, cfg, quiet=True).fit()
    return model.eval()


@pytest.fixture(scope="session")
def standard_model(digits):
    return train_digits(digits, "none")


@pytest.fixture(scope="session")
def robust_model(digits):
    return train_digits(digits, "pgd")


def untrained_digits_checkpoint(folder: Path) -> Path:
    """An untrained cnn-small checkpoint for digits in `folder` (pruning mechanics need no accuracy)."""
    info = load_dataset("digits").info
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "in_chans": 1, "mean": list(info.mean), "std": list(info.std)}
    path = folder / "dense.pt"
    save_checkpoint(path, create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=info.as_dict(), compression=[{"name": "none"}])
    return path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    """Run the installed console entry point in a subprocess (the real thing, as a user would)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "compressor", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


def cli(capsys, *args: str):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from compressor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models gain nothing from a second, a contended CPU makes two much slower,
    and recorded bit-identical numbers were made with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
