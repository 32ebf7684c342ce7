"""No code from a file, by design: every crafted .pt2 route (each proven real: trusting the file runs its payload),
AOTInductor packages' native code and plugins from the working directory stay inert without an explicit trust."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

from compressor.checkpoint import load_model
from compressor.errors import CompressorError
from compressor.models import create_model
from compressor.registry import installed_entry_points
from compressor.workflows import model_kwargs


class Payload:
    """Unpickling this creates `marker`: proof that code from the file ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _rewrite(src: pathlib.Path, dst: pathlib.Path, edit) -> pathlib.Path:
    """`src` with its members edited by `edit` (name -> bytes); names may hold a NUL, which zipfile drops itself."""
    with zipfile.ZipFile(src) as z:
        items = {i.filename: z.read(i.filename) for i in z.infolist()}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in edit(items).items():
            info = zipfile.ZipInfo(name)
            info.filename = info.orig_filename = name  # keep a NUL byte as written
            z.writestr(info, data)
    return dst


def _entry(items: dict, suffix: str) -> str:
    return next(k for k in items if k.endswith(suffix))


def _touch(marker: str) -> str:
    return f"__import__('pathlib').Path({marker!r}).touch() is None"


def _pickle_weight(payload: bytes):
    """Mark the first weight pickled and replace its bytes by `payload`."""
    def edit(items):
        cfg = _entry(items, "model_weights_config.json")
        config = json.loads(items[cfg])
        meta = next(iter(config["config"].values()))
        meta["use_pickle"] = True
        items[cfg] = json.dumps(config).encode()
        items[_entry(items, "data/weights/" + meta["path_name"])] = payload
        return items
    return edit


def _opaque_constant(payload: bytes):
    """Add a constant stored as an opaque pickled object (torch loads those with pickle.loads)."""
    def edit(items):
        cfg = _entry(items, "model_constants_config.json")
        config = json.loads(items[cfg])
        config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                    "tensor_meta": None}
        items[cfg] = json.dumps(config).encode()
        items[cfg.rsplit("/", 1)[0] + "/opaque_obj_0"] = payload
        return items
    return edit


def _sample_inputs(payload: bytes):
    """Replace the sample inputs (torch retries them with full unpickling when the safe loader fails)."""
    def edit(items):
        items[_entry(items, "data/sample_inputs/model.pt")] = payload
        return items
    return edit


def _legacy(kind: str, payload: bytes):
    """Add the legacy single-file layout of the state dict or constants (``data/<kind>/model.pt``), which torch
    prefers to the JSON payload config and retries with full unpickling."""
    def edit(items):
        root = _entry(items, "models/model.json").split("/", 1)[0]
        items[f"{root}/data/{kind}/model.pt"] = payload
        return items
    return edit


def _guards(code: str, name: str = "models/model.json"):
    """Guard code that `program.module()` execs, in the program JSON stored as `name`."""
    def edit(items):
        key = _entry(items, "models/model.json")
        program = json.loads(items.pop(key))
        program["guards_code"] = [code]
        items[key[:-len("models/model.json")] + name] = json.dumps(program).encode()
        return items
    return edit


def _shape_expression(code: str):
    """A shape symbol whose expression (a string torch gives to ``sympy.sympify``) also evaluates `code`."""
    def edit(items):
        key = _entry(items, "models/model.json")
        text = items[key].decode()
        symbol = json.dumps("Symbol('s77', positive=True, integer=True)")[1:-1]
        assert symbol in text, "the program has no dynamic dimension to craft"
        items[key] = text.replace(symbol, json.dumps(f"Symbol('s77', positive=True, integer=True) if {code} "
                                                     "else 0")[1:-1]).encode()
        return items
    return edit


def _nul_shadow(code: str):
    """The program JSON with guard code under its own name, then a clean copy named the same up to a NUL byte:
    Python's zipfile reads the clean copy by that name, torch's reader the crafted one."""
    def edit(items):
        key = _entry(items, "models/model.json")
        program = json.loads(items[key])
        clean, program["guards_code"] = items[key], [code]
        out = {}
        for name, data in items.items():
            out[name] = json.dumps(program).encode() if name == key else data
            if name == key:
                out[name + "\x00"] = clean
        return out
    return edit


CRAFTS = {  # the first audit's routes (a static or dynamic program)
    "pickled-weight": lambda m: _pickle_weight(pickle.dumps(Payload(m))),
    "opaque-constant": lambda m: _opaque_constant(pickle.dumps(Payload(m))),
    "sample-inputs": lambda m: _sample_inputs(pickle.dumps(Payload(m))),
    "guard-code": lambda m: _guards(_touch(m)),
}
ROUTES = {  # the second audit's routes, which a scan for known routes missed (a dynamic program)
    "sympy-shape-expression": lambda m: _shape_expression(_touch(m)),
    "legacy-state-dict": lambda m: _legacy("weights", pickle.dumps(Payload(m))),
    "legacy-constants": lambda m: _legacy("constants", pickle.dumps(Payload(m))),
    "nul-byte-member": lambda m: _nul_shadow(_touch(m)),
    "upper-case-program-json": lambda m: _guards(_touch(m), "models/model.JSON"),
}


def export_program(folder: pathlib.Path, info) -> tuple[pathlib.Path, nn.Module, torch.Tensor]:
    """A cnn-small for `info`'s dataset exported with a dynamic batch dimension (shape symbols in its JSON)."""
    torch.manual_seed(0)
    model = create_model("cnn-small", **model_kwargs(info), width=4, hidden=8).eval()
    x = torch.rand(4, *info.input_shape)
    path = folder / "ok.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), str(path))
    return path, model, x


def evil_aoti_package(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """An AOTInductor package layout whose shared library creates `marker` from its constructor (when dlopened)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the crafted shared library")
    src, lib = path.with_suffix(".c"), path.with_suffix(".so")
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void ran(void) { FILE *f = fopen('
                   f'{json.dumps(str(marker))}, "w"); if (f) fclose(f); }}\n')
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in (("archive_format", b"pt2"), ("version", b"0"), (".data/version", b"1"),
                           ("byteorder", b"little"), ("data/aotinductor/model/model.so", lib.read_bytes()),
                           ("data/aotinductor/model/model_metadata.json", b'{"AOTI_DEVICE_KEY": "cpu"}')):
            z.writestr(f"evil/{name}", data)
    src.unlink()
    lib.unlink()
    return path


@pytest.fixture(scope="module")
def program(digits, tmp_path_factory):
    return export_program(tmp_path_factory.mktemp("pt2"), digits.info)


@pytest.mark.parametrize("craft", sorted({**CRAFTS, **ROUTES}))
def test_crafted_pt2_runs_nothing_without_trust(program, tmp_path, craft):
    ok, _, x = program
    marker = tmp_path / "ran"
    bad = _rewrite(ok, tmp_path / f"{craft}.pt2", {**CRAFTS, **ROUTES}[craft](str(marker)))
    with pytest.raises(CompressorError, match=r"is a \.pt2 program, and loading one can run code .*`trust_program`"):
        load_model(bad)
    assert not marker.exists()
    # the craft is real: trusting the file does run its code (on load, or on the first forward for guards)
    try:
        load_model(bad, trust_program=True).model(x)
    except CompressorError:
        pass
    assert marker.exists()


def test_trusted_program_loads_and_matches_its_model(program):
    ok, model, x = program
    with pytest.raises(CompressorError, match="`trust_program`"):
        load_model(ok)
    loaded = load_model(ok, trust_program=True)
    assert loaded.source == "exported"
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x))


def test_trust_program_loads_legitimate_pickled_weight(program, tmp_path):
    ok, _, x = program
    clean = load_model(ok, trust_program=True).model
    with zipfile.ZipFile(ok) as z:  # the first weight, pickled the way torch pickles tensor subclasses
        items = {i.filename: z.read(i.filename) for i in z.infolist()}
    fqn = next(iter(json.loads(items[_entry(items, "model_weights_config.json")])["config"]))
    buf = io.BytesIO()
    torch.save(nn.Parameter(torch.export.load(str(ok)).state_dict[fqn].detach().clone()), buf)
    legit = _rewrite(ok, tmp_path / "legit.pt2", _pickle_weight(buf.getvalue()))
    assert torch.equal(load_model(legit, trust_program=True).model(x), clean(x))


@pytest.mark.parametrize("trust", [False, True])
def test_not_an_archive(tmp_path, trust):
    bad = tmp_path / "junk.pt2"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CompressorError, match="not a .pt2 archive"):
        load_model(bad, trust_program=trust)


def test_aoti_package_loads_native_code_only_with_trust(tmp_path):
    from exporters.engines import open_runner

    marker = tmp_path / "ran"
    evil = evil_aoti_package(tmp_path / "evil.pt2", marker)
    with pytest.raises(CompressorError, match="AOTInductor package, and loading one runs the native code .*"
                                              "`trust_program`"):
        open_runner(evil)
    with pytest.raises(CompressorError, match="AOTInductor package .*not a torch.export program"):
        load_model(evil, trust_program=True)  # as a model it is refused even when trusted: it is not a program
    assert not marker.exists()
    with pytest.raises(CompressorError, match="cannot load the AOTInductor package"):
        open_runner(evil, trust_program=True)
    assert marker.exists()  # the craft is real: trusting it ran the library's constructor


def _plugin(folder: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A distribution (``*.dist-info`` and its module) whose plugin module and command create `marker` on import."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "evilplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evilplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[compressor.plugins]\nmodels = evilplugin\n\n[compressor.commands]\n"
                                           "evil = evilplugin:evil\n\n[compressor.models]\nevil = evilplugin:evil\n")
    (folder / "evilplugin.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                          "def evil():\n    'A plugin.'\n")
    return folder


def test_entry_points_skip_the_working_directory(tmp_path, monkeypatch):
    plugin = _plugin(tmp_path / "here", tmp_path / "ran")
    monkeypatch.chdir(plugin)
    for entry in ("", ".", str(plugin), "here/../here"):
        monkeypatch.setattr(sys, "path", [entry, *sys.path])
        assert "evilplugin" not in {ep.value.split(":")[0] for ep in installed_entry_points("compressor.plugins")}
    monkeypatch.setattr(sys, "path", [str(plugin), *sys.path])
    monkeypatch.chdir(tmp_path)  # the same folder, installed on an absolute path elsewhere: a plugin like any other
    assert "evilplugin" in {ep.value for ep in installed_entry_points("compressor.plugins")}
    assert {ep.name for ep in installed_entry_points("compressor.commands")} >= {"prune", "export", "bench", "evil"}
    assert not (tmp_path / "ran").exists()  # listing entry points imports nothing


def test_arch_import_leaves_no_working_directory_on_sys_path(tmp_path, monkeypatch):
    from compressor.models.external import import_callable

    (tmp_path / "mynet_nocode.py").write_text("import torch\ndef Net():\n    return torch.nn.Linear(2, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p and os.path.realpath(p) != str(tmp_path)])
    assert callable(import_callable("mynet_nocode:Net"))
    assert str(tmp_path) not in sys.path  # a later lazy import (timm, onnx, ...) cannot come from the cwd
