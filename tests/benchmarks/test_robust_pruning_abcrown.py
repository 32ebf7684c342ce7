"""The alpha-beta-CROWN ResNet-4B definition loads its released weights by import path and reproduces their accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.errors import CompressorError
from tests.benchmarks.conftest import load_helper

SHARED = Path(__file__).resolve().parents[3] / "shared"
CKPT = SHARED / "checkpoints" / "abcrown_resnet4b_adv2px.pth"
DATA = SHARED / "data" / "cifar10_test.npz"
NORM = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}  # ../shared/checkpoints/README.md


@pytest.fixture(scope="module")
def bench():
    """Where robust_pruning.py loads its dense model."""
    yield from load_helper("pruning_rows")


def test_architecture_shapes_without_weights():
    from benchmarks.models.abcrown import resnet2b, resnet4b

    assert resnet4b()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert resnet4b().linear1.in_features == 512 and resnet2b().linear1.in_features == 1024
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in resnet4b().modules())


@pytest.mark.skipif(not (CKPT.is_file() and DATA.is_file()), reason="../shared checkpoints/data absent")
def test_released_weights_load_by_import_path_and_reproduce_clean_accuracy(bench):
    model, arch = bench.load_dense(CKPT, "benchmarks.models.abcrown:resnet4b",
                                   {"num_classes": 10, "in_chans": 3, **NORM})
    with np.load(DATA) as z:
        x = torch.from_numpy(z["x"][:500]).float() / 255
        y = torch.from_numpy(z["y"][:500])
    with torch.no_grad():
        acc = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert arch == "benchmarks.models.abcrown:resnet4b"
    assert acc == pytest.approx(0.766, abs=0.005)  # 77.2 % on all 10,000 (published); 76.6 % on the first 500


def test_bad_import_path_is_one_line(bench, tmp_path):
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(CompressorError, match="nothere"):
        bench.load_dense(tmp_path / "x.pth", "benchmarks.models.abcrown:nothere", {})
