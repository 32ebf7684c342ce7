"""End-to-end CLI tests on digits, and the bad-input contract: one line, exit code 2, nothing written."""

import json

import pytest
import torch

from compressor.models import create_model
from tests.conftest import cli, run_cli


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "m.pt"
    res = run_cli("train", "--arch", "cnn-small", "--dataset", "digits", "--epochs", "2", "--steps", "3",
                  "--batch-size", "64", "--device", "cpu", "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["best_epoch"] in (1, 2) and "val_pgd_acc" in report["best"]
    return out


@pytest.mark.slow
def test_train_eval_inspect_end_to_end(trained_ckpt, capsys):
    code, out, _ = cli(capsys, "eval", str(trained_ckpt), "--attacks", "fgsm,pgd10", "--eps", "0.1", "--json",
                       "--device", "cpu")
    assert code == 0
    res = json.loads(out)
    assert res["dataset"] == "digits" and res["n"] == 360 and res["eps"] == pytest.approx(0.1)
    acc = {k: v["accuracy"] for k, v in res["attacks"].items()}
    assert res["worst_case_accuracy"] <= min(acc.values()) <= max(acc.values()) <= res["clean_accuracy"]
    code, out, _ = cli(capsys, "inspect", str(trained_ckpt), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["arch"] == "cnn-small" and len(rep["layers"]) == 5
    import numpy as np

    w = torch.load(trained_ckpt, weights_only=True)["state_dict"]["features.0.weight"].reshape(32, -1).double()
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    assert rep["layers"][0]["kappa"] == pytest.approx(s.max() / s.min(), rel=1e-6)
    code, out, _ = cli(capsys, "inspect", str(trained_ckpt))
    assert code == 0 and "kappa" in out and "features.0" in out


@pytest.mark.slow
def test_eval_clamps_n_with_a_note(trained_ckpt, capsys):
    code, out, _ = cli(capsys, "eval", str(trained_ckpt), "--attacks", "fgsm", "--n", "100000", "--json")
    res = json.loads(out)
    assert code == 0 and res["n"] == 360 and "larger than" in res["note"]


def test_list_shows_registries(capsys):
    code, out, _ = cli(capsys, "list", "models")
    assert code == 0 and "cnn-small" in out and "vgg16_bn" in out
    code, out, _ = cli(capsys, "list", "attacks", "--json")
    assert {e["name"] for e in json.loads(out)["attacks"]} >= {"fgsm", "pgd", "cw"}
    code, out, _ = cli(capsys, "list", "runtimes", "--json")  # the latency probes of --target-speedup
    assert {e["name"] for e in json.loads(out)["runtimes"]} >= {"onnxruntime", "pytorch"}


@pytest.mark.parametrize("args,needle", [
    (["train", "--arch", "resnet81", "-o", "{tmp}/o.pt"], "did you mean 'resnet18'"),
    (["train", "--dataset", "cifar-10", "-o", "{tmp}/o.pt"], "did you mean 'cifar10'"),
    (["train", "--dataset", "cifar10", "--data-root", "{tmp}/nowhere", "-o", "{tmp}/o.pt"], "--download"),
    (["train", "--eps", "abc", "-o", "{tmp}/o.pt"], "8/255"),
    (["train", "--eps", "-1", "-o", "{tmp}/o.pt"], "eps"),
    (["train", "--adv", "madry", "-o", "{tmp}/o.pt"], "--adv"),
    (["eval", "{tmp}/missing.pt"], "does not exist"),
    (["eval", "{tmp}/corrupt.pt", "--dataset", "digits"], "corrupt or truncated"),
    (["eval", "{tmp}/sd.pt", "--dataset", "digits", "--arch", "resnet18"], "do not fit"),
    (["eval", "{tmp}/sd.pt", "--dataset", "digits"], "--arch"),
    (["eval", "{tmp}/sd.pt", "--dataset", "digits", "--arch", "cnn-small", "--attacks", "pgdd"], "unknown attack"),
    (["eval", "{tmp}/sd.pt", "--dataset", "digits", "--arch", "cnn-small", "--eps", "8/0"], "divides by zero"),
    (["list", "modles"], "did you mean 'models'"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, needle):
    torch.save(create_model("cnn-small", 10, 1).state_dict(), tmp_path / "sd.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 broken")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.slow
def test_existing_output_without_force(trained_ckpt, capsys):
    before = trained_ckpt.read_bytes()
    code, _, err = cli(capsys, "train", "--epochs", "1", "-o", str(trained_ckpt))
    assert code == 2 and "--force" in err
    assert trained_ckpt.read_bytes() == before


@pytest.mark.slow
def test_real_process_gives_no_traceback(tmp_path):
    res = run_cli("eval", str(tmp_path / "nope.pt"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: ")
