import pytest
import torch

from compressor.attacks import AttackBudget, build_attack, cw_margin_loss, fgsm, pgd
from compressor.errors import CompressorError
from compressor.evaluation import evaluate


@pytest.fixture(scope="module")
def batch(digits):
    return digits.test.float_images()[:128], digits.test.y[:128]


def test_pgd_takes_a_budget_or_its_fields(batch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = batch[0][:16], batch[1][:16]
    runs = []
    for call in (lambda: pgd(model, x, y, AttackBudget(0.1, alpha=0.03, steps=3, norm="l2", restarts=2)),
                 lambda: pgd(model, x, y, eps=0.1, alpha=0.03, steps=3, norm="l2", restarts=2),
                 lambda: pgd(model, x, y, AttackBudget(0.5, steps=3, norm="l2"), eps=0.1, alpha=0.03, restarts=2)):
        torch.manual_seed(1)
        runs.append(call())
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])  # fields set over a given budget
    assert AttackBudget(8 / 255).step_size == pytest.approx(2 / 255)
    with pytest.raises(CompressorError, match="'epsilon' is not an option of pgd: it takes alpha, eps, norm"):
        pgd(model, x, y, epsilon=0.1)
    with pytest.raises(CompressorError, match="pgd needs `eps`"):
        pgd(model, x, y, steps=3)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
@pytest.mark.slow
def test_pgd_stays_in_ball_and_box(robust_model, batch, norm, eps):
    x, y = batch
    x_adv = pgd(robust_model, x, y, eps=eps, steps=10, norm=norm, restarts=2)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert size.max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)


@pytest.mark.slow
def test_eps_zero_is_identity(robust_model, batch):
    x, y = batch
    assert torch.equal(pgd(robust_model, x, y, eps=0.0, steps=5), x)


@pytest.mark.slow
def test_accuracy_non_increasing_in_eps_and_pgd_beats_fgsm(robust_model, digits):
    accs = []
    for eps in (0.0, 0.05, 0.1, 0.2, 0.3):
        attacks = [build_attack("fgsm", eps), build_attack("pgd20", eps)] if eps else []
        torch.manual_seed(0)
        res = evaluate(robust_model, digits.test, attacks)
        if eps:
            assert res["attacks"]["pgd20"]["accuracy"] <= res["attacks"]["fgsm"]["accuracy"] + 1e-9
            accs.append(res["worst_case_accuracy"])
        else:
            accs.append(res["clean_accuracy"])
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[0] > 0.9 and accs[-1] < accs[0]


@pytest.mark.slow
def test_huge_eps_drives_accuracy_to_zero(robust_model, digits):
    res = evaluate(robust_model, digits.test, [build_attack("pgd20", 1.0)])
    assert res["attacks"]["pgd20"]["accuracy"] <= 0.02


@pytest.mark.slow
def test_restarts_never_weaker(robust_model, batch):
    x, y = batch
    torch.manual_seed(1)
    one = (robust_model(pgd(robust_model, x, y, eps=0.1, steps=5)).argmax(1) == y).float().mean()
    torch.manual_seed(1)
    five = (robust_model(pgd(robust_model, x, y, eps=0.1, steps=5, restarts=5)).argmax(1) == y).float().mean()
    assert five <= one


@pytest.mark.slow
def test_fgsm_is_one_signed_step(robust_model, batch):
    x, y = batch
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(robust_model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    expected = (x + 0.1 * g.sign()).clamp(0, 1).detach()
    assert torch.allclose(fgsm(robust_model, x.detach(), y, eps=0.1), expected, atol=1e-6)


def test_cw_margin_matches_definition():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 3.0]])
    y = torch.tensor([0, 1])
    assert torch.allclose(cw_margin_loss(logits, y), torch.tensor([1.0 - 2.0, 3.0 - 0.3]))


def test_bad_attack_specs():
    with pytest.raises(CompressorError, match="did you mean 'pgd20'"):
        build_attack("pdg20", 0.1)
    with pytest.raises(CompressorError):
        build_attack("pgd0", 0.1)
    assert build_attack("pgd50x3", 0.1).protocol()["restarts"] == 3
