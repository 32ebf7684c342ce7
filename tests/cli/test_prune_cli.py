"""`compressor prune` end to end on digits (tiny epochs) for every method, --resume, --plots, and bad input."""

import json

import pytest
import torch

from compressor.checkpoint import load_model
from pruners.allocation import keep_count
from tests.conftest import cli, untrained_digits_checkpoint

TINY = ["--epochs-prune", "2", "--epochs-finetune", "1", "--steps", "2", "--val-n", "64", "--eval-n", "40",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A cnn-small checkpoint for digits (untrained: the pruning mechanics do not need accuracy)."""
    return untrained_digits_checkpoint(tmp_path_factory.mktemp("dense"))


@pytest.mark.parametrize("method", ["magnitude", "hydra", "tscnc", "admm", "random"])
@pytest.mark.slow
def test_prune_end_to_end(ckpt, tmp_path, capsys, method):
    out = tmp_path / "p.pt"
    extra = ["--score-samples", "128"] if method == "tscnc" else []
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", method, "--sparsity", "0.9", "-o", str(out), *TINY,
                            *extra, "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    total = sum(r["params"] for r in rep["layers"])
    kept = sum(r["kept"] for r in rep["layers"])
    if rep["allocation"] == "layer":
        assert all(r["kept"] == keep_count(r["params"], 0.9) for r in rep["layers"])
    else:
        assert kept == keep_count(total, 0.9)
    assert rep["sparsity_achieved"] == pytest.approx(1 - kept / total)
    assert {"clean_accuracy", "pgd20_accuracy", "kappa_mean", "kappa_max", "lipschitz_bound"} <= set(rep["before"])
    assert rep["after"]["sparsity"] == rep["sparsity_achieved"] and rep["before"]["sparsity"] == 0
    assert [h["phase"] for h in rep["history"]] == ["prune", "prune", "finetune"] and "kappa_max" in rep["history"][0]
    loaded = load_model(out)  # strict load into the plain architecture
    meta = loaded.checkpoint.compression
    assert meta[0] == {"name": "none"} and meta[-1]["name"] == method and meta[-1]["kind"] == "prune"
    assert meta[-1]["sparsity_target"] == 0.9 and set(meta[-1]["per_layer"]) == {r["layer"] for r in rep["layers"]}
    assert not any(p.name.endswith(".state") for p in tmp_path.iterdir())  # states removed after success


@pytest.mark.slow
def test_pattern_skip_warning_plots_and_inspect(ckpt, tmp_path, capsys):
    out = tmp_path / "nm.pt"
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "magnitude", "--pattern", "2:4", "--plots", "-o",
                            str(out), *TINY, "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    assert rep["sparsity_target"] == 0.5 and rep["pattern_skipped"] == ["features.0"]
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "features.0" in warnings[0] and "2:4" in warnings[0]
    for p in rep["plots"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    code, stdout, _ = cli(capsys, "inspect", str(out), "--json")
    layers = {r["layer"]: r for r in json.loads(stdout)["layers"]}
    assert layers["classifier.1"]["sparsity"] == pytest.approx(0.5)
    code, stdout, _ = cli(capsys, "prune", str(ckpt), "-m", "random", "--sparsity", "0.5", "-o",
                          str(tmp_path / "table.pt"), *TINY)
    assert code == 0 and "kappa" in stdout and "classifier.1" in stdout


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(ckpt, tmp_path, capsys):
    args = ["prune", str(ckpt), "-m", "hydra", "--sparsity", "0.8", *TINY, "--json", "--quiet"]
    first = tmp_path / "a.pt"
    assert cli(capsys, *args, "-o", str(first), "--keep-state")[0] == 0
    # as if interrupted between the phases: the prune phase is replayed from its state, fine-tuning reruns
    second = tmp_path / "b.pt"
    (tmp_path / "a.pt.prune.state").rename(tmp_path / "b.pt.prune.state")
    code, _, err = cli(capsys, *args, "-o", str(second), "--resume")
    assert code == 0, err
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (first, second))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args,needle", [
    (["--sparsity", "1.5"], "[0, 1)"),
    (["--sparsity", "0.5", "--pattern", "4:2"], "N:M"),
    (["--sparsity", "0.5", "--layer-sparsity", "clasifier.*=0.5"], "matches no prunable layer"),
    (["--sparsity", "0.5", "--lambda", "1e-3"], "--lambda is an option of tscnc"),
    (["--sparsity", "0.5", "--allocation", "per-layer"], "--allocation"),
    (["--sparsity", "0.5", "--schedule", "iterative", "--rounds", "5", "--epochs-prune", "2"], "--rounds"),
    (["--sparsity", "0.5", "--resume"], "no pruning state"),
    (["--sparsity", "0.5", "--epochs-prune", "0", "--epochs-finetune", "0"], "--epochs-prune"),
    (["--sparsity", "0.5", "--eval-attack", "pgdd"], "unknown attack"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(ckpt, tmp_path, capsys, args, needle):
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(capsys, "prune", str(ckpt), "-m", "magnitude", "-o", str(tmp_path / "o.pt"), *args)
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unknown_method_and_phase_requirements(ckpt, tmp_path, capsys):
    code, _, err = cli(capsys, "prune", str(ckpt), "-m", "hydr", "--sparsity", "0.5", "-o", str(tmp_path / "o.pt"))
    assert code == 2 and "did you mean 'hydra'" in err
    code, _, err = cli(capsys, "prune", str(ckpt), "-m", "hydra", "--sparsity", "0.5", "--epochs-prune", "0",
                       "-o", str(tmp_path / "o.pt"))
    assert code == 2 and "needs a prune phase" in err
    assert not list(tmp_path.iterdir())
