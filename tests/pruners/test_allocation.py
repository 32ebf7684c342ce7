import pytest
import torch

from compressor.errors import CompressorError
from pruners import Allocator, MaskedLayers
from pruners.allocation import keep_count
from pruners.patterns import is_nm, nm_eligible

from .conftest import AllKinds


def _setup(model, mode, rules=None, nm=None):
    layers = MaskedLayers(model)
    torch.manual_seed(1)
    scores = [torch.rand(s) for s in layers.shapes]
    return layers, Allocator(layers.names, layers.shapes, mode, rules, nm), scores


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95, 0.99])
def test_layer_allocation_is_exact_per_layer(sparsity):
    layers, alloc, scores = _setup(AllKinds(), "layer")
    for mask, shape in zip(alloc.masks(scores, sparsity), layers.shapes):
        n = mask.numel()
        assert abs(int((mask == 0).sum()) - sparsity * n) <= 0.5 + 1e-9  # at most one weight of rounding
        assert int(mask.sum()) == keep_count(n, sparsity)


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.99])
def test_global_allocation_is_exact_overall_and_keeps_the_largest(sparsity):
    layers, alloc, scores = _setup(AllKinds(), "global")
    masks = alloc.masks(scores, sparsity)
    total = sum(m.numel() for m in masks)
    assert int(sum(m.sum() for m in masks)) == keep_count(total, sparsity)
    kept = torch.cat([s[m] for s, m in zip(scores, masks)])
    dropped = torch.cat([s[~m] for s, m in zip(scores, masks)])
    assert kept.min() >= dropped.max()


def test_rules_override_the_allocation_and_zero_keeps_a_layer_dense():
    rules = {"fc*": 0.5, "c3a": 0.0}
    for mode in ("layer", "global"):
        layers, alloc, scores = _setup(AllKinds(), mode, rules)
        masks = dict(zip(layers.names, alloc.masks(scores, 0.9)))
        assert bool(masks["c3a"].all())
        for name in ("fc1", "fc2"):
            assert int(masks[name].sum()) == keep_count(masks[name].numel(), 0.5)
        rest = [m for n, m in masks.items() if n not in ("fc1", "fc2", "c3a")]
        if mode == "global":
            total = sum(m.numel() for m in rest)
            assert int(sum(m.sum() for m in rest)) == keep_count(total, 0.9)
        else:
            assert all(int(m.sum()) == keep_count(m.numel(), 0.9) for m in rest)


def test_a_glob_that_matches_nothing_is_an_error():
    with pytest.raises(CompressorError, match="'classifer.*' matches no prunable layer"):
        _setup(AllKinds(), "layer", {"classifer.*": 0.5})


@pytest.mark.parametrize("mode", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_two_four_masks_are_valid_for_linear_and_every_conv(mode, sparsity):
    layers, alloc, scores = _setup(AllKinds(), mode, nm=(2, 4))
    # the first layer of each kind has an input size not divisible by 4: skipped, listed
    assert alloc.skipped == ["c1a", "c2a", "c3a", "fc1"]  # fc1 has 30 inputs
    masks = dict(zip(layers.names, alloc.masks(scores, sparsity)))
    for name in ("c1b", "c2b", "c3b", "fc2"):
        assert is_nm(masks[name], 2, 4), name
        if mode == "layer":
            assert int(masks[name].sum()) == keep_count(masks[name].numel(), sparsity)
    total = sum(m.numel() for m in masks.values())
    if mode == "global":
        assert int(sum(m.sum() for m in masks.values())) == keep_count(total, sparsity)


def test_nm_groups_run_along_the_input_dimension():
    w = torch.arange(2 * 8 * 3, dtype=torch.float).reshape(2, 8, 3)  # Conv1d (out, in, k)
    keep = nm_eligible(w, 2, 4)
    for o in range(2):
        for k in range(3):
            for g in range(2):
                group = keep[o, 4 * g:4 * g + 4, k]
                assert group.tolist() == [False, False, True, True]  # the two largest of each input group
