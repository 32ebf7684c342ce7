import pytest
import torch

from compressor.training import Callback
from pruners import make_pruner, prune_model
from pruners.allocation import keep_count
from pruners.patterns import is_nm
from pruners.workflow import phase_state_path

from .conftest import cnn

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier

METHODS = ["magnitude", "hydra", "tscnc", "admm", "random"]


def _nonzero_per_layer(model):
    from compressor.analysis import prunable_layers

    return {n: (int(torch.count_nonzero(m.weight)), m.weight.numel()) for n, m in prunable_layers(model)}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_hits_the_target_exactly_with_a_two_four_pattern(digits, tiny_cfg, method):
    model = cnn(digits)
    opts = {"score_samples": 128} if method == "tscnc" else {}
    pruner = make_pruner(method, sparsity=0.9, pattern="2:4", **opts)
    res = prune_model(model, digits, pruner, tiny_cfg, epochs_prune=2, epochs_finetune=1, quiet=True)
    counts = _nonzero_per_layer(model)
    if pruner.config.allocation == "layer":
        for name, (nnz, n) in counts.items():
            assert nnz == keep_count(n, 0.9), name  # exact up to one weight of rounding per layer
    else:
        total = sum(n for _, n in counts.values())
        assert sum(nnz for nnz, _ in counts.values()) == keep_count(total, 0.9)
    assert res["pattern_skipped"] == ["features.0"]  # one input channel: not divisible by 4
    for name, mod in ((n, m) for n, m in model.named_modules() if n in counts and n != "features.0"):
        assert is_nm(mod.weight.detach(), 2, 4), name
    assert [h["phase"] for h in res["history"]] == ["prune", "prune", "finetune"]
    assert all("kappa_mean" in h and "layers" in h for h in res["history"])


def test_global_allocation_and_iterative_schedule(digits, tiny_cfg):
    model = cnn(digits)
    pruner = make_pruner("magnitude", sparsity=0.95, allocation="global", schedule="iterative", rounds=2)
    res = prune_model(model, digits, pruner, tiny_cfg, epochs_prune=2, epochs_finetune=0, quiet=True)
    counts = _nonzero_per_layer(model)
    total = sum(n for _, n in counts.values())
    assert sum(nnz for nnz, _ in counts.values()) == keep_count(total, 0.95)
    first, last = res["history"][0]["sparsity"], res["history"][1]["sparsity"]
    assert first == pytest.approx(1 - 0.05 ** 0.5, abs=1e-3) and last == pytest.approx(0.95, abs=1e-4)
    assert res["phases"][0]["select"] == "last"  # the masks moved: the last epoch, not the best, is kept


class _Interrupt(Callback):
    def __init__(self, pruner, phase, epoch):
        self.pruner, self.phase, self.epoch = pruner, phase, epoch

    def on_epoch_begin(self, trainer, epoch):
        if self.pruner.phase.name == self.phase and epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method,phase", [("hydra", "prune"), ("admm", "prune"), ("tscnc", "finetune")])
def test_resume_reproduces_an_uninterrupted_run(digits, tiny_cfg, tmp_path, method, phase):
    opts = {"sparsity": 0.8, **({"score_samples": 128} if method == "tscnc" else {})}
    kw = dict(epochs_prune=2, epochs_finetune=2, quiet=True, track=False)
    full = cnn(digits)
    prune_model(full, digits, make_pruner(method, **opts), tiny_cfg, state_prefix=tmp_path / "a.pt", **kw)

    prefix = tmp_path / "b.pt"
    interrupted = make_pruner(method, **opts)
    with pytest.raises(KeyboardInterrupt):
        prune_model(cnn(digits), digits, interrupted, tiny_cfg, state_prefix=prefix,
                    callbacks=[_Interrupt(interrupted, phase, 1)], **kw)
    assert phase_state_path(prefix, phase).is_file()
    torch.manual_seed(123)  # resume must not depend on the RNG state it starts from
    resumed = cnn(digits)
    prune_model(resumed, digits, make_pruner(method, **opts), tiny_cfg, state_prefix=prefix, resume=True, **kw)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_third_party_pruner_plugs_in_with_its_own_scores_and_config(digits, tiny_cfg):
    from dataclasses import dataclass

    from pruners import PRUNERS, Pruner, PrunerConfig, option, register_pruner
    from pruners.scores import magnitude_scores

    @dataclass
    class InvertedConfig(PrunerConfig):
        power: float = option(1.0, "exponent of the inverted magnitude")

    @register_pruner("inverted-test")
    class Inverted(Pruner):
        """Keeps the smallest weights (a plugin for this test)."""

        name = "inverted-test"
        Config = InvertedConfig

        def scores(self):
            return [-(s ** self.config.power) for s in magnitude_scores(self.layers)]

    try:
        model = cnn(digits)
        pruner = make_pruner("inverted-test", sparsity=0.5, power=2.0, allocation="global")
        prune_model(model, digits, pruner, tiny_cfg, epochs_prune=0, epochs_finetune=1, quiet=True)
        counts = _nonzero_per_layer(model)
        total = sum(n for _, n in counts.values())
        assert sum(nnz for nnz, _ in counts.values()) == keep_count(total, 0.5)
    finally:
        PRUNERS._entries.pop("inverted-test", None)
