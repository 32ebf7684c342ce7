"""AOTInductor packages: compiled once on CPU, match PyTorch, refuse batch sizes outside their range; .pt2 programs
from torch.export still load as models; the CUDA 2:4 measurement skips without a GPU."""

from __future__ import annotations

import pytest
import torch

from compressor.checkpoint import load_model
from compressor.errors import CompressorError
from exporters.aoti import AotiRunner, is_aoti_package, semi_structured_speedup
from exporters.base import follows_2to4
from exporters.engines import engine_format, open_runner
from exporters.runners import run_many

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier


def test_aoti_package_runs_on_cpu_and_matches_pytorch(aoti_package, digits):
    path, model, result = aoti_package
    assert result.max_abs_diff <= 1e-4 and result.parity_inputs == "inputs[20]"
    assert is_aoti_package(path) and engine_format(path) == "aoti"
    runner = open_runner(path, trust_program=True)
    assert isinstance(runner, AotiRunner) and runner.batch_range == (1, 16)
    x = digits.split("test").head(37).float_images()
    with torch.no_grad():
        ref = model(x)
    assert (run_many(runner, x) - ref).abs().max() <= 1e-4  # 16 + 16 + 5 images
    assert (runner(x[:3]) - ref[:3]).abs().max() <= 1e-4
    with pytest.raises(CompressorError, match="batch size 17 is outside .*compiled range 1..16"):
        runner(x[:17])


def test_torch_export_programs_still_load_as_models(digits, tmp_path):
    from .conftest import tiny_cnn

    model = tiny_cnn(digits)
    x = torch.rand(2, 1, 8, 8)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "prog.pt2"))
    loaded = load_model(tmp_path / "prog.pt2", trust_program=True)
    assert loaded.source == "exported"
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x))
    assert not is_aoti_package(tmp_path / "prog.pt2")
    with pytest.raises(CompressorError, match="torch.export program, not an AOTInductor package"):
        engine_format(tmp_path / "prog.pt2")


def test_2to4_detection():
    w = torch.randn(8, 16)
    assert not follows_2to4(w)
    w.view(8, 4, 4)[:, :, :2] = 0
    assert follows_2to4(w)
    assert not follows_2to4(torch.zeros(8, 6))  # input size not divisible by 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels need a CUDA GPU")
def test_semi_structured_speedup_on_cuda():
    lin = torch.nn.Sequential(torch.nn.Linear(256, 256))
    with torch.no_grad():
        lin[0].weight.view(256, 64, 4)[:, :, :2] = 0
    rows = semi_structured_speedup(lin, batch_size=64, runs=5)
    assert rows and rows[0]["layer"] == "0"
    assert "unsupported" in rows[0] or (rows[0]["speedup"] > 0 and rows[0]["max_abs_diff"] < 1e-1)


def test_semi_structured_without_cuda_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(CompressorError, match="need a CUDA GPU"):
        semi_structured_speedup(torch.nn.Linear(8, 8))
