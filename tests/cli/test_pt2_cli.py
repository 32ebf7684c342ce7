"""torch.export programs (.pt2), trusted with --trust-program, through every command: eval, inspect (layers and
kappa read from the program's weights), export (onnx, aoti), bench, and prune's one-line refusal."""

from __future__ import annotations

import json

import pytest
import torch

from compressor.analysis import model_summary
from compressor.models import create_model
from tests.conftest import cli


@pytest.fixture(scope="module")
def programs(tmp_path_factory, digits):
    """One model exported twice: for a static batch of 4, and with a dynamic batch dimension."""
    info = digits.info
    torch.manual_seed(0)
    model = create_model("cnn-small", 10, 1, info.mean, info.std, width=4, hidden=8).eval()
    folder = tmp_path_factory.mktemp("pt2")
    x = torch.rand(4, 1, 8, 8)
    torch.export.save(torch.export.export(model, (x,)), folder / "static.pt2")
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), folder / "dynamic.pt2")
    return model, folder


@pytest.mark.parametrize("name", ["static.pt2", "dynamic.pt2"])
def test_eval_runs_the_program_at_any_batch_size(programs, digits, capsys, name):
    model, folder = programs
    code, out, err = cli(capsys, "eval", str(folder / name), "--trust-program", "--dataset", "digits", "--attacks", "fgsm,pgd5",
                         "--n", "50", "--batch-size", "16", "--json")
    assert code == 0, err
    res = json.loads(out)
    part = digits.test.head(50)
    with torch.no_grad():
        acc = (model(part.float_images()).argmax(1) == part.y).float().mean().item()
    assert res["clean_accuracy"] == pytest.approx(acc) and res["n"] == 50
    assert res["normalization"] == {"mean": [round(v, 6) for v in digits.info.mean],
                                    "std": [round(v, 6) for v in digits.info.std], "source": "inside the program"}


def test_inspect_reads_layers_and_kappa_from_the_program(programs, capsys):
    model, folder = programs
    code, out, err = cli(capsys, "inspect", str(folder / "static.pt2"), "--trust-program", "--json")
    assert code == 0, err
    rep = json.loads(out)
    want = model_summary(model)
    assert [(r["layer"], r["type"], r["shape"]) for r in rep["layers"]] == \
        [(r["layer"], r["type"], r["shape"]) for r in want["layers"]]
    assert [r["kappa"] for r in rep["layers"]] == pytest.approx([r["kappa"] for r in want["layers"]])
    assert rep["input_shape"] == [1, 8, 8] and rep["macs"] > 0 and rep["source"] == "exported"


@pytest.mark.slow
def test_export_onnx_and_aoti_from_a_program(programs, tmp_path, capsys):
    _, folder = programs
    code, out, err = cli(capsys, "export", str(folder / "static.pt2"), "-f", "onnx", "-o", str(tmp_path / "s.onnx"),
                         "--dataset", "digits", "--trust-program", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["batch_sizes"] == [4] and "batch size 4 only" in rep["note"] and rep["max_abs_diff"] <= 1e-4
    code, out, err = cli(capsys, "export", str(folder / "dynamic.pt2"), "-f", "onnx", "-o", str(tmp_path / "d.onnx"),
                         "--trust-program", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["batch_sizes"] == [1, 64] and rep["details"]["dynamic_batch"] and "note" not in rep
    pytest.importorskip("torch._inductor")
    code, out, err = cli(capsys, "export", str(folder / "static.pt2"), "-f", "aoti", "-o", str(tmp_path / "s-aoti.pt2"),
                         "--trust-program", "--json")
    assert code == 0, err
    assert json.loads(out)["max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_bench_a_program_and_prune_names_the_alternative(programs, tmp_path, capsys):
    _, folder = programs
    code, out, err = cli(capsys, "bench", str(folder / "static.pt2"), "--trust-program", "--dataset", "digits",
                         "--batch-sizes", "1,8", "--warmup", "1", "--runs", "2", "--n", "20", "--attacks", "fgsm", "--square-queries", "5",
                         "--out", str(tmp_path / "bench"), "--json")
    assert code == 0, err
    row = json.loads(out)["variants"][0]
    assert row["format"] == "pytorch"
    # a program traced for batch 4 is timed at its own batch, never padded, and the row says so
    assert [(r["batch_size"], r["requested_batch_size"]) for r in row["latency"]] == [(4, 1), (4, 8)]
    assert any("traced for batch 4" in note for note in row["notes"])
    assert row["normalization"]["source"] == "inside the program"
    code, out, err = cli(capsys, "prune", str(folder / "static.pt2"), "-m", "magnitude", "--dataset", "digits",
                         "-o", str(tmp_path / "p.pt"))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "cannot be pruned" in err and "--arch" in err and "compressor export" in err
    assert not (tmp_path / "p.pt").exists()
