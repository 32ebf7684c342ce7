"""Compressed storage: exact round trip, size at 95 % sparsity, loading without unpickling, inspect sizes."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from compressor.checkpoint import load_model, save_checkpoint
from compressor.errors import CompressorError
from compressor.workflows import model_kwargs
from compressor.storage import (pack_state_dict, read_compressed, same_values, save_compressed, storage_sizes,
                                unpack_state_dict)
from tests.conftest import cli

from .conftest import TINY_CNN, tiny_cnn


def sparsify(model: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    """Zero the smallest-magnitude weights of every Conv/Linear layer."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                w = m.weight
                k = int(sparsity * w.numel())
                w[w.abs() <= w.abs().flatten().kthvalue(k).values] = 0
    return model


@pytest.fixture
def sparse_ckpt(digits, tmp_path):
    model = sparsify(tiny_cnn(digits), 0.95)
    path = tmp_path / "sparse.pt"
    ckpt = save_checkpoint(path, model, arch="cnn-small", arch_kwargs={**model_kwargs(digits.info), **TINY_CNN},
                           dataset=digits.info.as_dict(), compression=[{"name": "magnitude", "structural": False}])
    return path, model, ckpt


def test_pack_round_trip_is_exact_with_signed_zeros_and_nan():
    w = torch.zeros(64, 64)
    w[0, :3] = torch.tensor([1.5, -0.0, float("nan")])
    w[5, 7] = -2.0
    w[6] = -0.0  # a folded mask over negative weights leaves -0.0: it must not count as a stored value
    sd = {"w": w, "half": w.half(), "dense": torch.randn(10), "steps": torch.tensor(3), "flag": torch.ones(2).bool()}
    tensors, sparse = pack_state_dict(sd)
    assert set(sparse) == {"w", "half"} and "dense" in tensors and "w" not in tensors
    assert sparse["w"]["nnz"] == 3 and tensors["w::values"].numel() == 3
    back = unpack_state_dict(tensors, sparse)
    for k, v in sd.items():
        assert same_values(back[k], v), k
    assert back["w"][0, 2].isnan() and back["w"][5, 7] == -2.0
    assert not same_values(back["w"], w + 1e-7)


def test_compressed_checkpoint_round_trips_and_is_small(sparse_ckpt, tmp_path):
    path, model, ckpt = sparse_ckpt
    out = save_compressed(tmp_path / "sparse.safetensors", model, ckpt)
    dense_pt = path.stat().st_size
    assert out.stat().st_size <= 0.15 * dense_pt, (out.stat().st_size, dense_pt)
    sizes = storage_sizes(model.state_dict())
    assert sizes["compressed_bytes"] <= 0.15 * sizes["dense_bytes"]
    loaded = load_model(out)  # through the ordinary loader, like any checkpoint
    assert loaded.checkpoint.arch == "cnn-small" and loaded.checkpoint.compression[0]["name"] == "magnitude"
    assert loaded.checkpoint.dataset["name"] == "digits"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model.eval()(x))


def test_loading_never_unpickles(sparse_ckpt, tmp_path, monkeypatch):
    path, model, ckpt = sparse_ckpt
    out = save_compressed(tmp_path / "s.safetensors", model, ckpt)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    state, meta = read_compressed(out)
    assert meta["arch"] == "cnn-small" and json.dumps(meta)


def test_corrupt_and_foreign_files_are_one_line(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CompressorError, match="cannot read"):
        load_model(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CompressorError, match="not a compressor sparse checkpoint"):
        load_model(tmp_path / "plain.safetensors")


def test_cli_export_and_inspect_show_both_sizes(capsys, sparse_ckpt, tmp_path):
    path, _, _ = sparse_ckpt
    out = tmp_path / "s.safetensors"
    code, text, err = cli(capsys, "export", str(path), "--format", "sparse-safetensors", "-o", str(out), "--json")
    assert code == 0, err
    rep = json.loads(text)
    assert rep["max_abs_diff"] == 0.0 and rep["details"]["ratio"] <= 0.15
    code, text, err = cli(capsys, "inspect", str(out), "--no-svd", "--json")
    assert code == 0, err
    rep = json.loads(text)
    assert rep["compressed_bytes"] <= 0.15 * rep["dense_bytes"] and rep["file_bytes"] == out.stat().st_size
    code, text, _ = cli(capsys, "inspect", str(path), "--no-svd")
    assert "dense_bytes" in text and "compressed_bytes" in text
