"""Crafted .pt2 archives: nothing in them runs without --trust-pickle, through every command that reads a model."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import zipfile

import pytest
import torch
from torch import nn

from compressor.checkpoint import load_model
from compressor.errors import CompressorError
from compressor.pt2_safety import pt2_hazards, safe_expression
from compressor.workflows import model_kwargs
from compressor.models import create_model

from .conftest import cli


class Payload:
    """Unpickling this creates `marker`: proof that code from the file ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _rewrite(src: pathlib.Path, dst: pathlib.Path, edit) -> pathlib.Path:
    with zipfile.ZipFile(src) as z:
        items = {i.filename: z.read(i.filename) for i in z.infolist()}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in edit(items).items():
            z.writestr(name, data)
    return dst


def _entry(items: dict, suffix: str) -> str:
    return next(k for k in items if k.endswith(suffix))


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


def _guards(code: str):
    """Guard code that `program.module()` execs."""
    def edit(items):
        key = _entry(items, "models/model.json")
        program = json.loads(items[key])
        program["guards_code"] = [code]
        items[key] = json.dumps(program).encode()
        return items
    return edit


@pytest.fixture(scope="module")
def programs(digits, tmp_path_factory):
    """A real exported digits model, with the dataset-less checkpoint commands need, and a marker path factory."""
    root = tmp_path_factory.mktemp("pt2")
    torch.manual_seed(0)
    model = create_model("cnn-small", **model_kwargs(digits.info), width=4, hidden=8).eval()
    x = digits.split("test").head(2).float_images()
    path = root / "ok.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    return root, path, x


CRAFTS = {
    "pickled-weight": lambda m: _pickle_weight(pickle.dumps(Payload(m))),
    "opaque-constant": lambda m: _opaque_constant(pickle.dumps(Payload(m))),
    "sample-inputs": lambda m: _sample_inputs(pickle.dumps(Payload(m))),
    "guard-code": lambda m: _guards(f"__import__('pathlib').Path({m!r}).touch() is None"),
}


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_crafted_pt2_runs_nothing_without_trust(programs, tmp_path, craft):
    _, ok, x = programs
    marker = tmp_path / "ran"
    bad = _rewrite(ok, tmp_path / f"{craft}.pt2", CRAFTS[craft](str(marker)))
    with pytest.raises(CompressorError, match="`trust_pickle`"):
        load_model(bad)
    assert not marker.exists()
    # the craft is real: trusting the file does run its code (on load, or on the first forward for guards)
    try:
        load_model(bad, trust_pickle=True).model(x)
    except Exception:
        pass
    assert marker.exists()


@pytest.mark.parametrize("command", ["inspect", "eval", "export", "prune"])
def test_crafted_pt2_refused_by_every_command(programs, tmp_path, capsys, command):
    _, ok, _ = programs
    marker = tmp_path / "ran"
    bad = _rewrite(ok, tmp_path / "bad.pt2", CRAFTS["pickled-weight"](str(marker)))
    args = {"inspect": ["inspect", str(bad)],
            "eval": ["eval", str(bad), "--dataset", "digits", "--n", "4", "--attacks", "fgsm"],
            "export": ["export", str(bad), "-f", "onnx", "-o", str(tmp_path / "out.onnx"), "--dataset", "digits"],
            "prune": ["prune", str(bad), "-m", "magnitude", "--sparsity", "0.5", "-o", str(tmp_path / "out.pt"),
                      "--dataset", "digits"]}
    code, out, err = cli(capsys, *args[command])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "pickle" in lines[0] and "--trust-pickle" in lines[0], err
    assert "Traceback" not in err
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt2"]


def test_trust_pickle_loads_legitimate_pickled_weight(programs, tmp_path):
    _, ok, x = programs
    clean = load_model(ok).model
    with zipfile.ZipFile(ok) as z:  # the first weight, pickled the way torch pickles tensor subclasses
        items = {i.filename: z.read(i.filename) for i in z.infolist()}
    cfg = json.loads(items[_entry(items, "model_weights_config.json")])
    fqn, meta = next(iter(cfg["config"].items()))
    buf = io.BytesIO()
    torch.save(nn.Parameter(torch.export.load(str(ok)).state_dict[fqn].detach().clone()), buf)
    legit = _rewrite(ok, tmp_path / "legit.pt2", _pickle_weight(buf.getvalue()))
    with pytest.raises(CompressorError, match=f"stores '{fqn}'"):
        load_model(legit)
    trusted = load_model(legit, trust_pickle=True).model
    assert torch.equal(trusted(x), clean(x))


def test_plain_export_has_no_hazards(programs):
    assert pt2_hazards(programs[1]) == []


def test_not_an_archive(tmp_path):
    bad = tmp_path / "junk.pt2"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CompressorError, match="not a .pt2 archive"):
        load_model(bad)


@pytest.mark.parametrize("text,ok", [
    ("Symbol('s77', positive=True, integer=True)", True),
    ("L['x'].size()[0] <= 64", True),
    ("Eq(Mod(s0, 4), 0)", True),
    ("2*s0 + FloorDiv(s1, 3) >= 1.5", True),
    ("__import__('os').system('true')", False),
    ("Integer(1).__class__.__mro__", False),
    ("lambdify(s0, 'x')", False),
    ("torch.hub.load('x', 'y')", False),
    ("[c for c in ()]", False),
    ("open('/etc/passwd')", False),
])
def test_safe_expression(text, ok):
    assert safe_expression(text) is ok
