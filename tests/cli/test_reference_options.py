"""Reference-faithful training options on `train` and `prune` (--weight-decay, --craft-mode, --amp, --channels-last)
are used and recorded in the checkpoint provenance; the ARLST preset adds its separable layers and turns h(A) on."""

import json

import pytest
import torch

from tests.conftest import cli, untrained_digits_checkpoint

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier

TINY = ["--epochs-prune", "2", "--epochs-finetune", "1", "--steps", "1", "--val-n", "32", "--eval-n", "32",
        "--device", "cpu"]


def _train_config(path) -> dict:
    return torch.load(path, weights_only=True)["provenance"]["train_config"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return untrained_digits_checkpoint(tmp_path_factory.mktemp("dense"))


def test_train_records_weight_decay_craft_mode_and_amp(tmp_path, capsys):
    out = tmp_path / "t.pt"
    code, _, err = cli(capsys, "train", "--dataset", "digits", "--epochs", "1", "--steps", "1", "--val-n", "32",
                       "--device", "cpu", "--weight-decay", "1e-4", "--craft-mode", "train", "--amp", "off",
                       "-o", str(out), "--quiet")
    assert code == 0, err
    cfg = _train_config(out)
    assert (cfg["weight_decay"], cfg["craft_mode"], cfg["amp"]) == (1e-4, "train", "off")
    code, _, err = cli(capsys, "train", "--dataset", "digits", "--epochs", "1", "--craft-mode", "sideways",
                       "-o", str(tmp_path / "bad.pt"))
    assert code == 2 and "--craft-mode must be train, eval or auto" in err and not (tmp_path / "bad.pt").exists()
    code, _, err = cli(capsys, "train", "--dataset", "digits", "--epochs", "1", "--channels-last", "yes",
                       "-o", str(tmp_path / "bad.pt"))
    assert code == 2 and "--channels-last must be on, off or auto" in err and not (tmp_path / "bad.pt").exists()


def test_prune_method_defaults_and_overrides_are_recorded(ckpt, tmp_path, capsys):
    out = tmp_path / "admm.pt"
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "admm", "--sparsity", "0.5", "-o", str(out), *TINY,
                            "--json")
    assert code == 0, err
    cfg = _train_config(out)
    # Ye et al.'s reference: weight decay 1e-4, PGD-AT examples crafted with BatchNorm in train mode
    assert (cfg["adv"], cfg["weight_decay"], cfg["craft_mode"], cfg["amp"]) == ("pgd", 1e-4, "train", "auto")
    assert json.loads(stdout)["train"]["craft_mode"] == "train"
    out = tmp_path / "mag.pt"
    code, _, err = cli(capsys, "prune", str(ckpt), "-m", "magnitude", "--sparsity", "0.5", "-o", str(out), *TINY,
                       "--weight-decay", "2e-4", "--craft-mode", "train", "--amp", "on", "--channels-last", "on",
                       "--json")
    assert code == 0, err
    cfg = _train_config(out)
    assert (cfg["adv"], cfg["weight_decay"], cfg["craft_mode"], cfg["amp"]) == ("trades", 2e-4, "train", "on")
    assert cfg["channels_last"] == "on"


def test_arlst_preset_adds_separable_layers_and_h_of_a(ckpt, tmp_path, capsys):
    out = tmp_path / "arlst.pt"
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "arlst", "--sparsity", "0.8", "-o", str(out), *TINY,
                            "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    assert [t["name"] for t in rep["transforms"]] == ["separable-linear"]
    assert rep["config"]["cond_reg"] == 1e-3 and rep["config"]["cond_nu"] == 1e-3
    assert any("factors" in r["layer"] for r in rep["layers"])  # HYDRA prunes the separable factors too
    assert _train_config(out)["weight_decay"] == 1e-4  # HYDRA's reference value


def test_arlst_transform_specs_keep_the_stage_order():
    from pruners.arlst import ARLSTPruner
    from pruners.hydra import HydraPruner

    assert ARLSTPruner.transform_specs([]) == ["separable-linear"]
    assert ARLSTPruner.transform_specs(["nm"]) == ["separable-linear", "nm"]
    assert ARLSTPruner.transform_specs(["channels:0.5"]) == ["channels:0.5", "separable-linear"]
    assert ARLSTPruner.transform_specs(["separable-linear:classifier.1"]) == ["separable-linear:classifier.1"]
    assert HydraPruner.transform_specs(["nm"]) == ["nm"]
