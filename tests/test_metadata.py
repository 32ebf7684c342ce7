"""The checkpoint metadata schema, the memory budget and bounded JSON (compressor.metadata, .budget, .parsing)."""

from __future__ import annotations

import pytest
import torch

from compressor.budget import ENV, check_allocation, memory_budget
from compressor.errors import CompressorError
from compressor.metadata import check_arch_kwargs, check_checkpoint
from compressor.models import create_model, parse_arch_kwargs
from compressor.parsing import json_depth, load_json

GOOD = {"format": "compressor.checkpoint", "format_version": 1, "arch": "cnn-small",
        "arch_kwargs": {"num_classes": 10, "in_chans": 1, "mean": [0.3], "std": [0.4], "width": 4},
        "classes": ["0", "1"], "input_shape": [1, 8, 8], "normalization": {"mean": [0.3], "std": [0.4]},
        "dataset": {"name": "digits", "num_classes": 10, "input_shape": [1, 8, 8], "default_eps": 0.1},
        "state_dict": {"w": torch.ones(2)}, "compression": [{"name": "magnitude", "sparsity": 0.5}],
        "provenance": {"command": "compressor train", "versions": {"torch": "2"}, "seed": 0, "metrics": {}}}


def test_a_good_checkpoint_passes():
    check_checkpoint(GOOD, "m.pt")
    check_checkpoint({**GOOD, "dataset": {}, "input_shape": [], "provenance": {}, "compression": []}, "m.pt")


@pytest.mark.parametrize("key,value,expected", [
    ("arch", 3, "'arch' holds int 3, expected non-empty text"),
    ("arch", "", "'arch' holds str '', expected non-empty text"),
    ("arch_kwargs", [1], r"'arch_kwargs' holds list \[1\], expected a dict"),
    ("arch_kwargs", {"width": True}, "'arch_kwargs.width' holds bool True, expected an integer"),
    ("arch_kwargs", {"num_classes": 10**6}, r"'arch_kwargs.num_classes' holds int 1000000, expected an integer in "
                                             r"\[1, 100,000\]"),
    ("arch_kwargs", {"mean": [float("nan")]}, "'arch_kwargs.mean' holds list"),
    ("arch_kwargs", {"kwargs": {"num_classes": -1}}, "'arch_kwargs.kwargs.num_classes' holds int -1"),
    ("arch_kwargs", {1: 2}, "'arch_kwargs key' holds int 1, expected text"),
    ("state_dict", {"w": [1.0]}, "'state_dict.w' holds list"),
    ("compression", [{"name": 5}], r"'compression\[0\].name' holds int 5"),
    ("provenance", {"versions": "2.0"}, "'provenance.versions' holds str"),
    ("dataset", {"default_eps": 5}, "'dataset.default_eps' holds int 5, expected a number in"),
    ("dataset", {"classes": "abc"}, "'dataset.classes' holds str"),
    ("input_shape", [3, 32], r"'input_shape' holds list \[3, 32\], expected \[channels, height, width\]"),
    ("module", "code", "'module' holds str 'code', expected a pickled"),
    ("other", object(), "'other' holds object"),
])
def test_every_field_is_checked(key, value, expected):
    with pytest.raises(CompressorError, match=f"^m.pt is not a valid compressor checkpoint: its {expected}"):
        check_checkpoint({**GOOD, key: value}, "m.pt")


def test_required_fields():
    with pytest.raises(CompressorError, match="missing arch_kwargs, state_dict"):
        check_checkpoint({"arch": "cnn-small"}, "m.pt")


def test_a_deep_unknown_field_is_refused_without_recursion():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CompressorError, match="nests more than 32 levels"):
        check_checkpoint({**GOOD, "extra": deep}, "m.pt")


def test_arch_kwargs_names_the_caller():
    with pytest.raises(CompressorError, match=r"^`arch_kwargs`: 'depth' holds float 2.5"):
        check_arch_kwargs({"depth": 2.5})
    assert check_arch_kwargs({"depth": 28, "drop_rate": 0.3, "cfg": [64, "M"]}) == {"depth": 28, "drop_rate": 0.3,
                                                                                    "cfg": [64, "M"]}


def test_create_model_refuses_bad_and_oversized_arguments():
    with pytest.raises(CompressorError, match="model 'cnn-small': 'width' holds int 0"):
        create_model("cnn-small", in_chans=1, width=0)
    with pytest.raises(CompressorError, match="model 'cnn-small' with these arguments would take .* memory budget"):
        create_model("cnn-small", in_chans=1, width=60000)


def test_memory_budget_env(monkeypatch):
    monkeypatch.setenv(ENV, "2G")
    assert memory_budget() == 2 * 1024**3
    monkeypatch.setenv(ENV, "1000")
    assert memory_budget() == 1000
    with pytest.raises(CompressorError, match="would take 2e-06 GB, more than the memory budget of 1e-06 GB"):
        check_allocation(2000, "x", "fix it")
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(CompressorError, match="is not a size"):
        memory_budget()
    monkeypatch.delenv(ENV)
    assert memory_budget() > 0


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth('{"a": "[[[{{{", "b": [1, {"c": "\\\\\\"]"}]}') == 3
    assert json_depth("[]") == 1 and json_depth("1") == 0


def test_load_json_bounds_depth():
    with pytest.raises(CompressorError, match="nests 40 levels deep, more than 32"):
        load_json("[" * 40 + "]" * 40, "`x`", 32, "{}")
    with pytest.raises(CompressorError, match="not valid JSON"):
        load_json("{", "`x`", 32, "{}")
    assert load_json('{"a": [1]}', "`x`", 32, "{}") == {"a": [1]}


def test_parse_arch_kwargs_checks_sizes():
    with pytest.raises(CompressorError, match="'num_classes' holds int -3"):
        parse_arch_kwargs('{"num_classes": -3}')
    with pytest.raises(CompressorError, match="nests 100001 levels"):
        parse_arch_kwargs("[" * 100001 + "]" * 100001)
    assert parse_arch_kwargs('{"width": 8}') == {"width": 8}
