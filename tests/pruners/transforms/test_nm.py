"""`nm`: N:M sparsity as the paired pruner's pattern, or alone with `--method none`."""

import pytest
import torch

from compressor.errors import CompressorError
from pruners import make_pruner, prune_model
from pruners.patterns import is_nm
from pruners.transforms import parse_transforms

from .helpers import make, transform

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier


def pruner_for(method, specs, **options):
    chosen = parse_transforms(specs)
    for t in chosen:
        options = t.pruner_options(method, options)
    return make_pruner(method, **options)


@pytest.mark.parametrize("method, options", [("none", {}), ("magnitude", {"sparsity": 0.75})])
def test_nm_alone_or_with_a_pruner_on_separable_factors(digits, tiny_cfg, method, options):
    model, _ = make("cnn-small")
    transform(model, ["separable-linear"], (1, 8, 8))
    pruner = pruner_for(method, ["separable-linear", "nm:2:4"], **options)
    assert pruner.config.pattern == "2:4"
    prune_model(model, digits, pruner, tiny_cfg, epochs_prune=0, epochs_finetune=1, track=False, quiet=True)
    weights = {n: m.weight for n, m in model.named_modules() if n in {"features.2", "features.5",
                                                                          "classifier.1.factors.0", "classifier.3"}}
    assert all(is_nm(w, 2, 4) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights.values())
    assert nonzero / total == pytest.approx(1 - (options.get("sparsity") or 0.5), abs=0.01)


def test_nm_conflicts_and_method_none_without_anything():
    with pytest.raises(CompressorError, match="`pattern` 1:4 and `transforms` nm:2:4 disagree"):
        pruner_for("magnitude", ["nm"], sparsity=0.5, pattern="1:4")
    with pytest.raises(CompressorError, match="`method` none removes no weights"):
        make_pruner("none", sparsity=0.5)
    with pytest.raises(CompressorError, match="needs N:M"):
        parse_transforms(["nm:unstructured"])
    with pytest.raises(CompressorError, match="importance=pruner needs a pruner"):
        pruner_for("none", ["channels:0.5,importance=pruner"])
