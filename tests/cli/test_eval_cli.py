"""`compressor eval` with the attack suite: JSON report and protocol, --save-adv, warnings, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from compressor.checkpoint import save_checkpoint
from compressor.workflows import model_kwargs
from tests.conftest import cli

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier


@pytest.fixture(scope="module")
def ckpt(robust_model, digits, tmp_path_factory):
    """The session's PGD-trained digits model as a checkpoint that records its dataset."""
    path = tmp_path_factory.mktemp("eval") / "robust.pt"
    save_checkpoint(path, robust_model, arch="cnn-small", arch_kwargs=model_kwargs(digits.info),
                    dataset=digits.info.as_dict())
    return path


@pytest.fixture(scope="module")
def dead_ckpt(digits, tmp_path_factory):
    """A cnn-small whose weights are all zero: constant logits, input gradients exactly zero."""
    from compressor.models import create_model

    kwargs = model_kwargs(digits.info)
    model = create_model("cnn-small", **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    path = tmp_path_factory.mktemp("dead") / "dead.pt"
    save_checkpoint(path, model, arch="cnn-small", arch_kwargs=kwargs, dataset=digits.info.as_dict())
    return path


def test_json_report_protocol_worst_case_and_saved_examples(ckpt, tmp_path, capsys):
    out = tmp_path / "adv.npz"
    code, stdout, err = cli(capsys, "eval", str(ckpt), "--attacks", "fgsm,pgd20,cw,apgd-ce20,square200", "--eps",
                            "0.1", "--n", "64", "--batch-size", "32", "--seed", "0", "--device", "cpu", "--json",
                            "--save-adv", str(out))
    assert code == 0, err
    res = json.loads(stdout)  # stdout holds the JSON and nothing else
    assert list(res["attacks"]) == ["fgsm", "pgd20", "cw", "apgd-ce20", "square200"]
    acc = {k: v["accuracy"] for k, v in res["attacks"].items()}
    assert res["worst_case_accuracy"] <= min(acc.values()) <= max(acc.values()) <= res["clean_accuracy"]
    for r in res["attacks"].values():
        assert r["seconds"] > 0 and r["images_per_s"] > 0 and r["attacked"] > 0
    proto = res["protocol"]
    assert (proto["norm"], proto["eps"], proto["seed"], proto["n"], proto["batch_size"]) == ("linf", 0.1, 0, 64, 32)
    assert proto["model_mode"] == "eval" and proto["dtype"] == "float32"
    assert {"torch", "pyautoattack", "python"} <= set(proto["versions"])
    assert proto["attacks"]["pgd20"]["steps"] == 20 and proto["attacks"]["pgd20"]["restarts"] == 1
    assert proto["attacks"]["apgd-ce20"]["steps"] == 20 and proto["attacks"]["apgd-ce20"]["seed"] == 0
    assert proto["attacks"]["square200"]["queries"] == 200
    assert res["warnings"] == [] and res["adversarial_file"]["path"] == str(out)

    with np.load(out, allow_pickle=False) as f:
        assert {"indices", "y", "clean_correct", "meta", "x_adv_pgd20", "robust_square200"} <= set(f.files)
        assert f["x_adv_pgd20"].dtype == np.float32 and f["x_adv_pgd20"].shape == (64, 1, 8, 8)
        assert f["robust_cw"].mean() == pytest.approx(acc["cw"])
        assert 0 <= f["x_adv_square200"].min() and f["x_adv_square200"].max() <= 1
        assert json.loads(str(f["meta"]))["attacks"]["cw"]["steps"] == 30


def test_channels_last_is_recorded_and_changes_no_outcome_beyond_rounding(ckpt, capsys):
    runs = {}
    for mode in ("off", "on"):
        code, stdout, err = cli(capsys, "eval", str(ckpt), "--attacks", "pgd20", "--eps", "0.1", "--n", "128",
                                "--device", "cpu", "--channels-last", mode, "--json")
        assert code == 0, err
        runs[mode] = json.loads(stdout)
    assert runs["on"]["protocol"]["memory_format"] == "channels_last"
    assert runs["off"]["protocol"]["memory_format"] == "contiguous"  # auto is off on a CPU too
    assert runs["on"]["clean_accuracy"] == runs["off"]["clean_accuracy"]
    on, off = (runs[m]["attacks"]["pgd20"]["accuracy"] for m in ("on", "off"))
    # float rounding, amplified by PGD's sign steps, may flip images on a decision boundary (3 of 200 seen on CI in
    # test_evaluation); a wrong layout or wrong weights would move far more
    assert abs(on - off) <= 6 / 128


def test_autoattack_json_keeps_stdout_clean(ckpt, capsys):
    code, stdout, err = cli(capsys, "eval", str(ckpt), "--attacks", "pgd20,aa", "--eps", "0.3", "--n", "12",
                            "--device", "cpu", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["attacks"]["aa"]["accuracy"] <= res["attacks"]["pgd20"]["accuracy"] + 1e-9
    assert res["protocol"]["attacks"]["aa"]["version"] == "standard"


def test_table_output_and_existing_save_adv_needs_force(ckpt, tmp_path, capsys):
    out = tmp_path / "adv.npz"
    out.write_bytes(b"keep me")
    code, _, err = cli(capsys, "eval", str(ckpt), "--attacks", "fgsm", "--n", "16", "--save-adv", str(out))
    assert code == 2 and "--force" in err and out.read_bytes() == b"keep me"
    code, stdout, err = cli(capsys, "eval", str(ckpt), "--attacks", "fgsm,apgd-ce10", "--n", "16", "--save-adv",
                            str(out), "--force")
    assert code == 0, err
    assert "worst case" in stdout and "apgd-ce10" in stdout and "pyautoattack 0.2.0" in stdout
    assert "steps 10" in stdout and str(out) in stdout
    with np.load(out) as f:
        assert f["x_adv_apgd-ce10"].shape == (16, 1, 8, 8)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_warnings_go_to_stderr_and_into_the_json(dead_ckpt, capsys):
    code, stdout, err = cli(capsys, "eval", str(dead_ckpt), "--attacks", "pgd10", "--n", "32", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert any("gradient masking" in w for w in res["warnings"])
    assert "warning: input gradients are zero" in err


@pytest.mark.parametrize("args,needle", [
    (["--attacks", "apgd-cee"], "did you mean 'apgd-ce'"),
    (["--attacks", "sqare"], "did you mean 'square'"),
    (["--attacks", "aa20"], "takes no step count"),
    (["--attacks", "aa", "--norm", "l1"], "--norm linf"),
    (["--eps", "0"], "eps must be > 0"),
    (["--eps", "8/"], "not a number"),
    (["--n", "0"], "--n must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--channels-last", "yes"], "--channels-last must be on, off or auto"),
])
def test_bad_input_is_one_line_exit_2(ckpt, tmp_path, capsys, args, needle):
    out = tmp_path / "adv.npz"
    code, stdout, err = cli(capsys, "eval", str(ckpt), "--n", "8", *args, "--save-adv", str(out))
    assert code == 2, (stdout, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err and not out.exists()


def test_probability_model_is_one_line_exit_2(robust_model, tmp_path, capsys):
    path = tmp_path / "probs.pt"
    torch.save(nn.Sequential(robust_model, nn.Softmax(dim=1)), path)
    code, _, err = cli(capsys, "eval", str(path), "--trust-pickle", "--dataset", "digits", "--n", "32")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "returns probabilities" in lines[0] and "softmax" in lines[0], err


def test_n_larger_than_the_split_is_clamped_with_a_note(ckpt, capsys):
    code, stdout, _ = cli(capsys, "eval", str(ckpt), "--attacks", "square50", "--n", "5000", "--json")
    res = json.loads(stdout)
    assert code == 0 and res["n"] == 360 and "larger than" in res["note"] and res["protocol"]["n"] == 360
