"""The pyautoattack-backed attacks behind our interface, on digits (and on MNIST when ../shared/data has it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor import evaluate_model
from compressor.attacks import build_attack
from compressor.registry import ATTACKS
from compressor.data import load_dataset
from compressor.errors import CompressorError
from compressor.evaluation import evaluate
from compressor.models import create_model
from compressor.training import TrainConfig, Trainer

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier

SHARED_DATA = Path(__file__).resolve().parents[1].parents[1] / "shared" / "data"
REFERENCE = ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "aa", "aa-plus", "aa-rand"]
ALL = ["fgsm", "pgd20", "cw", *REFERENCE]


def _size(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@pytest.fixture(scope="module")
def batch(digits, robust_model):
    """64 test images the robust model classifies correctly."""
    x, y = digits.test.float_images()[:80], digits.test.y[:80]
    with torch.no_grad():
        ok = robust_model(x).argmax(1) == y
    return x[ok][:64], y[ok][:64]


@pytest.fixture(scope="module")
def aa_run(robust_model, digits, tmp_path_factory):
    """One AutoAttack evaluation, with APGD-CE and PGD-20 beside it, on 32 digits; adversarial examples saved."""
    path = tmp_path_factory.mktemp("adv") / "adv.npz"
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    res = evaluate_model(robust_model, digits, ["pgd20", "apgd-ce", "aa"], eps=0.1, n=32, seed=0, device="cpu",
                         save_adv=path)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left as it was
    with np.load(path, allow_pickle=False) as f:
        saved = {k: torch.from_numpy(f[k]) for k in f.files if k != "meta"}
        saved["meta"] = json.loads(str(f["meta"]))
    return res, saved


def test_registry_names_and_reference_settings():
    assert set(REFERENCE) <= set(ATTACKS.names())
    p = build_attack("aa", 8 / 255).protocol()
    assert p["version"] == "standard" and list(p["attacks"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert p["attacks"]["apgd-ce"] == {"steps": 100, "restarts": 1, "eot_iter": 1, "rho": 0.75}
    assert p["attacks"]["apgd-t"]["targets"] == 9 and p["attacks"]["fab-t"]["targets"] == 9
    assert p["attacks"]["square"]["queries"] == 5000 and p["implementation"].startswith("pyautoattack ")
    assert build_attack("aa-rand", 0.1).protocol()["attacks"]["apgd-ce"]["eot_iter"] == 20
    assert build_attack("aa-plus", 0.1).protocol()["attacks"]["apgd-dlr"]["restarts"] == 5
    assert build_attack("square", 0.1).protocol()["queries"] == 5000
    assert build_attack("square300", 0.1).protocol()["queries"] == 300
    p = build_attack("apgd-t50x2", 0.1, seed=7).protocol()
    assert (p["steps"], p["restarts"], p["targets"], p["seed"]) == (50, 2, 9, 7)
    assert build_attack("fab-t", 0.1).white_box and not build_attack("square", 0.1).white_box


@pytest.mark.parametrize("spec,needle", [
    ("apgd-cee", "did you mean 'apgd-ce'"), ("aa20", "takes no step count"), ("square0", "queries >= 1"),
    ("apgd", "did you mean"),
])
def test_bad_specs_are_one_line_errors(spec, needle):
    with pytest.raises(CompressorError, match=needle) as exc:
        build_attack(spec, 0.1)
    assert "\n" not in str(exc.value)


def test_l1_is_refused_with_a_fix():
    with pytest.raises(CompressorError, match="`norm` linf"):
        build_attack("apgd-ce", 0.1, norm="l1")


def test_eps_zero_gives_clean_accuracy_for_every_attack(robust_model, digits):
    res = evaluate_model(robust_model, digits, ALL, eps=0.0, n=100, device="cpu")
    for name in ALL:
        assert res.attacks[name].accuracy == res.clean_accuracy, name
    assert res.worst_case_accuracy == res.clean_accuracy


@pytest.mark.parametrize("spec,norm,eps", [
    ("apgd-ce", "linf", 0.1), ("apgd-ce50", "l2", 0.5), ("apgd-dlr50", "linf", 0.1), ("apgd-t10", "linf", 0.1),
    ("fab-t20", "linf", 0.1), ("square300", "linf", 0.1), ("square300", "l2", 0.5),
])
def test_perturbations_stay_in_ball_and_box_quietly(robust_model, batch, capsys, spec, norm, eps):
    x, y = batch
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    x_adv = build_attack(spec, eps, norm)(robust_model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)  # pyautoattack reseeds; we restore
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert _size(x_adv, x, norm).max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        fooled = (robust_model(x_adv).argmax(1) != y).sum()
    assert fooled > 0  # the attack did something
    assert capsys.readouterr().out == ""  # nothing on stdout (the --json contract)


@pytest.mark.parametrize("spec", ["apgd-ce", "square300"])
def test_accuracy_non_increasing_in_eps_and_about_zero_at_huge_eps(robust_model, digits, spec):
    accs = []
    for eps in (0.0, 0.05, 0.15, 0.3, 1.0):
        res = evaluate_model(robust_model, digits, [spec], eps=eps, n=64, device="cpu")
        accs.append(res.attacks[spec].accuracy)
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[0] > 0.9 and accs[-1] <= 0.02, accs


def test_autoattack_at_most_apgd_ce_at_most_clean(aa_run, digits):
    res, saved = aa_run
    acc = {k: v.accuracy for k, v in res.attacks.items()}
    assert acc["aa"] <= acc["apgd-ce"] <= res.clean_accuracy
    assert res.worst_case_accuracy <= min(acc.values())
    # per sample: AutoAttack runs the same seeded APGD-CE first, so what survives it survives APGD-CE alone
    assert not (saved["robust_aa"] & ~saved["robust_apgd-ce"]).any()
    assert saved["robust_aa"].float().mean().item() == pytest.approx(acc["aa"])
    worst = saved["robust_pgd20"] & saved["robust_apgd-ce"] & saved["robust_aa"]
    assert worst.float().mean().item() == pytest.approx(res.worst_case_accuracy)
    assert 0 < res.attacks["aa"].attacked <= 32


def test_saved_adversarial_examples(aa_run, digits):
    res, saved = aa_run
    assert torch.equal(saved["indices"], torch.arange(32)) and torch.equal(saved["y"], digits.test.y[:32])
    assert saved["meta"]["eps"] == 0.1 and saved["meta"]["format"] == "compressor.adversarial/1"
    assert res.adversarial_file["keys"] == saved["meta"]["keys"]
    x = digits.test.float_images()[saved["indices"]]
    clean_wrong = ~saved["clean_correct"]
    for name in ("pgd20", "apgd-ce", "aa"):
        x_adv = saved[f"x_adv_{name}"]
        assert x_adv.dtype == torch.float32 and x_adv.shape == x.shape, name
        assert _size(x_adv, x, "linf").max() <= 0.1 + 1e-5 and 0 <= x_adv.min() and x_adv.max() <= 1, name
        assert torch.equal(x_adv[clean_wrong], x[clean_wrong]), name  # not attacked: the clean image


def test_autoattack_report_protocol(aa_run):
    res, _ = aa_run
    proto = res.protocol
    assert proto["n"] == 32 and proto["seed"] == 0 and proto["eps"] == 0.1 and proto["norm"] == "linf"
    assert proto["versions"]["pyautoattack"] == "0.2.0" and "torch" in proto["versions"]
    assert proto["attacks"]["aa"]["attacks"]["square"]["queries"] == 5000
    assert res.attacks["aa"].seconds > 0 and res.attacks["aa"].images_per_s > 0
    assert isinstance(res.warnings, list)


def test_fixed_seed_reproduces_and_other_seeds_differ(robust_model, batch, digits):
    x, y = batch[0][:32], batch[1][:32]
    for spec in ("apgd-ce10", "square100"):
        a, b = build_attack(spec, 0.1, seed=0), build_attack(spec, 0.1, seed=0)
        x_adv = a(robust_model, x, y)
        assert torch.equal(x_adv, b(robust_model, x, y)), spec
        assert not torch.equal(x_adv, build_attack(spec, 0.1, seed=1)(robust_model, x, y)), spec
    runs = [evaluate_model(robust_model, digits, ["pgd10", "apgd-ce10", "square100"], eps=0.1, n=32, seed=3,
                           device="cpu") for _ in range(2)]
    first, second = ({k: v.accuracy for k, v in r.attacks.items()} for r in runs)
    assert first == second


def test_our_pgd20_and_reference_apgd_ce_agree_on_a_pgd_trained_model(robust_model, digits):
    res = evaluate_model(robust_model, digits, ["pgd20", "apgd-ce"], eps=0.1, seed=0, device="cpu")
    assert res.n == 360
    pgd, apgd = res.attacks["pgd20"].accuracy, res.attacks["apgd-ce"].accuracy
    assert apgd <= pgd <= apgd + 0.03, (pgd, apgd)


def test_square_attacks_any_callable_returning_arrays(robust_model, batch, digits):
    x, y = batch[0][:32], batch[1][:32]

    def engine(images: torch.Tensor) -> np.ndarray:  # like an ONNX Runtime session: no autograd, NumPy out
        with torch.no_grad():
            return robust_model(images).numpy()

    square = build_attack("square100", 0.2, seed=0)
    assert torch.equal(square(engine, x, y), square(robust_model, x, y))
    res = evaluate(engine, digits.test, [square], n=32)
    assert 0 <= res["attacks"]["square100"]["accuracy"] < res["clean_accuracy"]
    with pytest.raises(CompressorError, match="not differentiable.*square"):
        evaluate(engine, digits.test, [build_attack("pgd10", 0.1)], n=32)


def test_too_few_classes_is_a_clear_error(batch):
    x, y = batch
    three = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(CompressorError, match="apgd-t needs at least 4 classes"):
        build_attack("apgd-t", 0.1)(three, x, y % 3)


def test_aa_rand_runs_on_a_few_points(robust_model, batch):
    x, y = batch
    x_adv = build_attack("aa-rand", 0.3)(robust_model, x[:4], y[:4])
    assert _size(x_adv, x[:4], "linf").max() <= 0.3 + 1e-5
    with torch.no_grad():
        assert (robust_model(x_adv).argmax(1) == y[:4]).float().mean() <= 0.25


# ------------------------------------------------------------------------------------------ MNIST (optional)

@pytest.fixture(scope="module")
def mnist():
    path = SHARED_DATA / "mnist_test.npz"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    bundle = load_dataset(f"npz:{path}")
    torch.manual_seed(0)
    info = bundle.info
    model = create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std, width=16, hidden=64)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, adv="none", seed=0, device="cpu")
    Trainer(model, bundle, cfg, quiet=True).fit()
    return bundle, model.eval()


def test_mnist_eps_zero_monotone_and_huge_eps(mnist):
    bundle, model = mnist
    specs = ["fgsm", "pgd10", "apgd-ce20", "square200"]
    worst = []
    for eps in (0.0, 0.05, 0.1, 0.3):
        res = evaluate_model(model, bundle, specs, eps=eps, n=100, device="cpu", save_adv=None)
        if eps == 0:
            assert all(r.accuracy == res.clean_accuracy for r in res.attacks.values())
            assert res.clean_accuracy > 0.8
        worst.append(res.worst_case_accuracy)
    assert all(a >= b for a, b in zip(worst, worst[1:])), worst
    assert worst[-1] <= 0.02 and res.attacks["apgd-ce20"].accuracy <= 0.02


def test_mnist_perturbations_stay_in_ball(mnist):
    bundle, model = mnist
    x, y = bundle.test.float_images()[:32], bundle.test.y[:32]
    for spec in ("apgd-ce20", "square100", "fab-t10"):
        x_adv = build_attack(spec, 0.1)(model, x, y)
        assert _size(x_adv, x, "linf").max() <= 0.1 + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1, spec
