"""A new exporter is two places: its module and the import that registers it. Written here as a TorchScript exporter
(a module file, then its import), it shows in `compressor list exporters`, `export --help` and `bench --help`,
exports through `compressor export`, and `bench` finds it by suffix and runs it (only with `--trust-program`, as its
`check_trusted` asks)."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from compressor.errors import CompressorError
from compressor.registry import EXPORTERS
from tests.conftest import cli

MODULE = '''
"""TorchScript (torch.jit.trace) on CPU; loading one runs the code it holds, so it opens only when trusted."""

import time

import torch

from compressor.errors import CompressorError
from exporters import register_exporter
from compressor.folding import prepare_model
from exporters.base import Exporter, ExportResult, check_parity, file_bytes, random_inputs
from exporters.runners import TorchRunner


@register_exporter()
class TorchScriptExporter(Exporter):
    """TorchScript module traced on CPU (fp32); test plugin."""

    name = "torchscript-test"
    suffixes = (".tsm",)

    def export(self, model, path, *, input_shape, sample_inputs=None, parity_inputs=None, **options):
        t0 = time.perf_counter()
        model = prepare_model(model)
        x = sample_inputs if sample_inputs is not None else random_inputs(input_shape)
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model, x[:2]), str(path))
            diff, tol = check_parity(model(x), torch.jit.load(str(path))(x), "fp32", str(path))
        return ExportResult(path=str(path), format=self.name, file_bytes=file_bytes(path), max_abs_diff=diff,
                            tolerance=tol, parity_inputs=parity_inputs, seconds=time.perf_counter() - t0)

    @classmethod
    def check_trusted(cls, path, trust_program):
        if not trust_program:
            raise CompressorError(f"{path} is TorchScript, code that runs when loaded: pass `trust_program` only if "
                                  "you trust its source")

    @classmethod
    def open_runner(cls, path, *, device="cpu", threads=None, trust_program=False):
        cls.check_trusted(path, trust_program)
        return TorchRunner(torch.jit.load(str(path)), device)
'''


@pytest.fixture
def torchscript_exporter(tmp_path, monkeypatch):
    """Place one: the exporter's module. Place two: the import that registers it (exporters/__init__.py's line)."""
    (tmp_path / "torchscript_test_exporter.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("torchscript_test_exporter")
    yield
    EXPORTERS._entries.pop("torchscript-test", None)
    sys.modules.pop("torchscript_test_exporter", None)


def test_new_exporter_is_listed_exported_and_benched(capsys, torchscript_exporter, digits_ckpt, tmp_path):
    code, out, err = cli(capsys, "list", "exporters", "--json")
    assert code == 0, err
    assert "torchscript-test" in {e["name"] for e in json.loads(out)["exporters"]}
    code, out, _ = cli(capsys, "export", "--help")
    assert code == 0 and "torchscript-test" in out and ".tsm" in out
    code, out, _ = cli(capsys, "bench", "--help")
    assert code == 0 and ".tsm" in out

    engine = tmp_path / "tiny.tsm"
    code, out, err = cli(capsys, "export", str(digits_ckpt), "-f", "torchscript-test", "-o", str(engine), "--json")
    assert code == 0, err
    assert json.loads(out)["format"] == "torchscript-test" and engine.is_file()

    fast = ["--n", "16", "--runs", "2", "--rounds", "1", "--warmup", "0", "--square-queries", "0", "--attacks", "",
            "--batch-sizes", "1"]
    code, _, err = cli(capsys, "bench", f"{digits_ckpt}={engine}", *fast, "--out", str(tmp_path / "refused"))
    assert code == 2 and "TorchScript" in err and "--trust-program" in err
    assert not (tmp_path / "refused").exists()  # refused before anything ran or was written
    code, out, err = cli(capsys, "bench", f"{digits_ckpt}={engine}", *fast, "--trust-program",
                         "--out", str(tmp_path / "bench"), "--json")
    assert code == 0, err
    (variant,) = json.loads(out)["variants"]
    assert variant["format"] == "torchscript-test" and variant["name"] == "tiny:torchscript-test"
    assert variant["agreement_clean"] == 1.0


def test_an_exporter_without_a_runner_is_no_engine(tmp_path):
    """onnxruntime writes .onnx too but defines no runner: the onnx exporter opens .onnx files."""
    from exporters.engines import engine_exporters, engine_format

    names = [e.name for e in engine_exporters()]
    assert "onnx" in names and "onnxruntime" not in names and "sparse-safetensors" not in names
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    assert engine_format(path) == "onnx"
    with pytest.raises(CompressorError, match="cannot tell the engine format .*\\.onnx \\(onnx\\)"):
        engine_format(tmp_path / "m.bin")
