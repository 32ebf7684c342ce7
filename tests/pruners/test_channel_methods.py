"""Robust channel importances of the `channels` transform: adversarial Taylor and HYDRA rank a useless channel last
(magnitude ranks it first), the kappa criterion prefers the removal that keeps the condition number lower."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressor.attacks import pgd
from compressor.errors import CompressorError
from pruners.transforms import TransformContext, parse_transforms
from pruners.transforms.channel_scores import keep_count, leave_one_out_log_kappa, log_kappa
from tests.pruners.transforms.helpers import transform

USELESS = 5
SHAPE = (1, 8, 8)


class Tiny(nn.Module):
    """conv -> relu -> conv -> relu -> pool -> linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    """Tiny adversarially trained on digits (PGD-2 at the test eps, a few hundred steps: scores are learned on the
    adversarial loss of a robust model, as HYDRA's are); conv1's channel USELESS then feeds nothing (conv2 reads it
    with zero weights) while its own weights are the largest."""
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = digits.train.x.float(), digits.train.y
    x = x / 255 if x.max() > 1 else x
    for step in range(300):
        i = torch.randint(0, len(y), (64,), generator=torch.Generator().manual_seed(step))
        x_adv = pgd(model, x[i], y[i], eps=0.1, steps=2)
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y[i]).backward()
        opt.step()
    with torch.no_grad():
        model.conv1.weight[USELESS] *= 10
        model.conv2.weight[:, USELESS] = 0
    return model.eval()


def conv1_ranking(model: nn.Module, spec: str, digits, cfg) -> torch.Tensor:
    """The importance the transform `spec` gives conv1's output channels (its group with conv2's inputs)."""
    import torch_pruning as tp

    (t,) = parse_transforms([spec])
    ignored = [model.fc]
    importance = t._importance(model, TransformContext(SHAPE, data=digits, config=cfg), ignored)
    graph = tp.DependencyGraph().build_dependency(model, torch.zeros(1, *SHAPE), verbose=False)
    group = graph.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=list(range(8)))
    return importance(group)


def test_magnitude_ranks_the_useless_channel_first(trained, digits, tiny_cfg):
    imp = conv1_ranking(copy.deepcopy(trained), "channels:0.5", digits, tiny_cfg)
    assert int(imp.argmax()) == USELESS  # so the robust importances below are not magnitude in disguise


@pytest.mark.parametrize("spec", ["channels:0.5,importance=taylor,samples=128",
                                  "channels:0.5,importance=hydra,score_epochs=2,round_to=1"])
def test_robust_importances_rank_the_useless_channel_last(trained, digits, tiny_cfg, spec):
    model = copy.deepcopy(trained)
    imp = conv1_ranking(model, spec, digits, tiny_cfg)
    assert int(imp.argmin()) == USELESS, imp
    assert torch.equal(model.conv1.weight, trained.conv1.weight)  # scores learned with the weights frozen
    assert not model.conv1._forward_pre_hooks and not model.conv2._forward_pre_hooks  # the gates are gone


def test_hydra_transform_removes_the_useless_channel_then_finetunes(trained, digits, tiny_cfg):
    model = copy.deepcopy(trained)
    (entry,) = transform(model, ["channels:0.5,importance=hydra,round_to=1"], SHAPE, data=digits, config=tiny_cfg)
    removed = [idxs for name, out, idxs in entry["history"] if name == "conv1" and out]
    assert removed and USELESS in removed[0] and len(removed[0]) == 4
    assert entry["importance"] == "hydra" and entry["score_epochs"] == 1
    assert model.conv1.weight.shape[0] == 4 and model(torch.zeros(2, *SHAPE)).shape == (2, 10)


class Conditioning(nn.Module):
    """1x1 conv whose channel 3 nearly repeats channel 0, both larger than channels 1 and 2 (which magnitude
    therefore removes first): removing channel 1 leaves a 3 x 3 matrix of kappa ~ 2e4, removing 0 or 3 one of
    kappa 2. A linear layer whose columns are all alike reads them (any input removal leaves the same kappa)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[2.0, 0, 0], [0, 1, 0], [0, 0, 1], [2, 2e-4, 0]]).view(4, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


def kappa(w: torch.Tensor) -> float:
    return float(log_kappa(w.flatten(1)).exp())


def test_kappa_removes_the_channel_whose_removal_keeps_kappa_lowest():
    model = Conditioning()
    w = model.conv.weight.detach().clone()
    alternatives = [kappa(torch.cat([w[:c], w[c + 1:]])) for c in range(4)]
    assert min(alternatives) < 3 and max(alternatives) > 1e3
    (entry,) = transform(model, ["channels:0.25,importance=kappa,round_to=1"], (3, 4, 4))
    (removed,) = [idxs for name, out, idxs in entry["history"] if name == "conv" and out]
    assert removed in ([0], [3])
    assert kappa(model.conv.weight) == pytest.approx(min(alternatives), rel=1e-3)
    magnitude = Conditioning()
    transform(magnitude, ["channels:0.25,round_to=1"], (3, 4, 4))
    assert kappa(magnitude.conv.weight) > 1e3  # magnitude removes a unit channel and keeps the near-repeat


@pytest.mark.parametrize("dim", [0, 1])
def test_leave_one_out_log_kappa_matches_removing_each_channel(dim):
    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    got = leave_one_out_log_kappa(w, dim)
    base = log_kappa(w.flatten(1))
    for c in range(w.shape[dim]):
        rest = torch.cat([w.narrow(dim, 0, c), w.narrow(dim, c + 1, w.shape[dim] - c - 1)], dim)
        assert float(got[c]) == pytest.approx(float(log_kappa(rest.flatten(1)) - base), abs=1e-4)


def test_keep_count_rounds_like_the_transform():
    assert keep_count(8, 0.5, 1) == 4 and keep_count(64, 0.5, 8) == 32 and keep_count(64, 0.3, 8) == 48
    assert keep_count(4, 0.99, 1) == 1


def test_bad_options_are_one_line():
    with pytest.raises(CompressorError, match="score_epochs is an option of importance=hydra"):
        parse_transforms(["channels:0.5,score_epochs=3"])
    with pytest.raises(CompressorError, match="unknown importance 'kapa': choose magnitude, taylor, hydra, kappa"):
        parse_transforms(["channels:0.5,importance=kapa"])
    with pytest.raises(CompressorError, match="importance=hydra needs data"):
        transform(Tiny(), ["channels:0.5,importance=hydra"], SHAPE)
