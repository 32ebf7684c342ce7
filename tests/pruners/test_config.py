import dataclasses
from typing import Optional

import pytest

from compressor.errors import CompressorError
from pruners import PRUNERS, build_config, make_pruner
from pruners.config import PrunerConfig, config_fields, parse_pattern, parse_rules


def test_builtins_are_registered_with_typed_configs():
    assert {"magnitude", "hydra", "tscnc", "admm", "random"} <= set(PRUNERS.names())
    flags = {f.flag for f in config_fields(PRUNERS.get("tscnc").Config)}
    assert {"--sparsity", "--allocation", "--pattern", "--schedule", "--lambda", "--tau", "--taylor"} <= flags
    assert make_pruner("tscnc", sparsity=0.9).config.lam == pytest.approx(1e-3)
    assert make_pruner("tscnc", sparsity=0.9).config.tau == pytest.approx(1e-4)


def test_option_types_whether_or_not_annotations_are_postponed():
    """A plugin's config module may or may not use ``from __future__ import annotations``: same CLI types."""
    @dataclasses.dataclass
    class Plain(PrunerConfig):
        weight: float = 1.0
        count: int = 2
        flag: bool = False
        maybe: float | None = None
        old_style: Optional[int] = None
        name: str = "x"

    types = {f.name: f.type for f in config_fields(Plain)}
    assert {k: types[k] for k in ("weight", "count", "flag", "maybe", "old_style", "name")} == {
        "weight": float, "count": int, "flag": bool, "maybe": float, "old_style": int, "name": str}
    assert types["sparsity"] is float and types["layer_sparsity"] is str  # the base's postponed annotations


@pytest.mark.parametrize("text,expected", [("2:4", (2, 4)), ("1:8", (1, 8)), ("unstructured", None)])
def test_pattern_parsing(text, expected):
    assert parse_pattern(text) == expected


@pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "2-4", "a:b", "2:4:8"])
def test_bad_pattern_is_one_line(bad):
    with pytest.raises(CompressorError, match="N:M") as exc:
        parse_pattern(bad)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan")])
def test_sparsity_outside_unit_interval(sparsity):
    with pytest.raises(CompressorError, match=r"\[0, 1\)"):
        make_pruner("magnitude", sparsity=sparsity)


def test_sparsity_defaults_to_the_pattern_and_is_required_otherwise():
    assert make_pruner("magnitude", pattern="2:4").config.sparsity == pytest.approx(0.5)
    with pytest.raises(CompressorError, match="`sparsity`"):
        make_pruner("magnitude")


def test_rules_and_unknown_options():
    assert parse_rules("classifier.*=0.5, features.0=0") == {"classifier.*": 0.5, "features.0": 0.0}
    with pytest.raises(CompressorError, match="GLOB=SPARSITY"):
        parse_rules("classifier.*")
    with pytest.raises(CompressorError, match="not an option of pruner magnitude"):
        make_pruner("magnitude", sparsity=0.5, lam=1e-3)
    with pytest.raises(CompressorError, match="`allocation`"):
        build_config(PrunerConfig, {"sparsity": 0.5, "allocation": "per-layer"})
