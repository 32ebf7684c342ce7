import torch
from torch import nn

from compressor.attacks import build_attack
from compressor.evaluation import channels_last_weights, evaluate


def test_channels_last_evaluation_gives_the_same_outcomes_and_leaves_the_weights(robust_model, digits):
    robust_model.register_buffer("probe", torch.zeros(2, 3, 4, 5))  # a 4-D buffer: `Module.to` replaces it
    before = {n: (t, t.stride()) for n, t in [*robust_model.named_parameters(), *robust_model.named_buffers()]}
    attacks = [build_attack("pgd10", 0.1, seed=0)]
    plain = evaluate(robust_model, digits.test, attacks, n=200, keep_adv=True)
    fast = evaluate(robust_model, digits.test, attacks, n=200, keep_adv=True, channels_last=True)
    assert fast["channels_last"] and not plain["channels_last"]
    assert fast["clean_accuracy"] == plain["clean_accuracy"]
    # float rounding differs between the layouts and PGD's sign steps amplify it, so images on a decision boundary
    # may flip (0 here, 3 of 200 on a CI machine); wrong weights or a wrong layout would flip far more
    flips = (fast["adversarial"]["robust"]["pgd10"] != plain["adversarial"]["robust"]["pgd10"]).sum().item()
    assert flips <= 10
    assert abs(fast["attacks"]["pgd10"]["accuracy"] - plain["attacks"]["pgd10"]["accuracy"]) <= 0.03
    after = {n: (t, t.stride()) for n, t in [*robust_model.named_parameters(), *robust_model.named_buffers()]}
    assert all(after[n][0] is t and after[n][1] == s for n, (t, s) in before.items())


def test_channels_last_weights_converts_inside_the_block_only():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    conv = model[0].weight
    with channels_last_weights(model):
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert conv.is_contiguous()
    with channels_last_weights(model, on=False):
        assert conv.is_contiguous()


def test_channels_last_weights_leaves_a_lazy_module_as_it_is():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(2))  # `Module.to` would raise on it
    with channels_last_weights(model):
        assert model[0].weight.is_contiguous()
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 2)
