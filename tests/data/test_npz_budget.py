"""npz files are measured from their headers before numpy reads any data (compressor.data.npz)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from compressor.budget import ENV
from compressor.data.npz import load_npz
from compressor.errors import CompressorError


def _member(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_the_budget_is_checked_on_declared_sizes(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((100, 1, 8, 8), np.uint8), y=np.arange(100) % 2)
    monkeypatch.setenv(ENV, "4000")  # 6,400 + 800 bytes declared
    with pytest.raises(CompressorError, match=r"'x' declares shape \(100, 1, 8, 8\) of uint8, which would take"):
        load_npz(path, "npz:d")
    monkeypatch.setenv(ENV, "7000")  # the members together
    with pytest.raises(CompressorError, match="'y' declares shape"):
        load_npz(path, "npz:d")
    monkeypatch.delenv(ENV)
    assert len(load_npz(path, "npz:d").test) == 20


def test_a_small_compressed_member_is_not_a_bomb(tmp_path):
    path = tmp_path / "blank.npz"
    np.savez_compressed(path, x=np.zeros((500, 1, 8, 8), np.uint8), y=np.arange(500) % 5)
    assert load_npz(path, "npz:blank").info.num_classes == 5


def test_bad_headers_are_one_line(tmp_path):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", b"\x93NUMPY\x09\x00" + b"\0" * 20)
        z.writestr("y.npy", _member(np.arange(4)))
    with pytest.raises(CompressorError, match="is not a readable .npz file"):
        load_npz(path, "npz:bad")


def test_a_plain_npy_is_not_an_npz(tmp_path):
    path = tmp_path / "x.npz"
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.with_suffix(".npy").rename(path)
    with pytest.raises(CompressorError, match="is not a readable .npz file"):
        load_npz(path, "npz:x")


def test_the_held_out_test_part_says_what_it_is(tmp_path):
    path = tmp_path / "xy.npz"
    np.savez(path, x=np.zeros((100, 1, 8, 8), np.uint8), y=np.arange(100) % 2)
    data = load_npz(path, "npz:xy", seed=3)
    assert data.describe("test") == ("test split (a stratified 20% of x, y held out with seed 3: the file has no "
                                     "test split of its own)")
    assert data.describe("train") == "train"
    both = tmp_path / "split.npz"
    np.savez(both, x_train=np.zeros((50, 1, 8, 8), np.uint8), y_train=np.arange(50) % 2,
             x_test=np.zeros((10, 1, 8, 8), np.uint8), y_test=np.arange(10) % 2)
    assert load_npz(both, "npz:split").describe("test") == "test"
