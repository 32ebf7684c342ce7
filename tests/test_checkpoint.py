import os
import pickle

import pytest
import torch

from compressor.checkpoint import FORMAT, load_model, save_checkpoint
from compressor.errors import CompressorError
from compressor.io import atomic_write
from compressor.models import create_model


def _model(num_classes=10):
    torch.manual_seed(0)
    return create_model("cnn-small", num_classes, 1, [0.3], [0.4]).eval()


def _save(tmp_path, model, name="m.pt", **kw):
    kwargs = {"num_classes": 10, "in_chans": 1, "mean": [0.3], "std": [0.4]}
    return save_checkpoint(tmp_path / name, model, arch="cnn-small", arch_kwargs=kwargs,
                           dataset={"name": "digits", "num_classes": 10, "input_shape": [1, 8, 8],
                                    "classes": [str(i) for i in range(10)]},
                           compression=[{"name": "none"}], provenance={"seed": 3, "metrics": {"acc": 0.5}}, **kw)


def test_round_trip_is_exact_and_keeps_metadata(tmp_path):
    model = _model()
    _save(tmp_path, model)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert raw["normalization"] == {"mean": [0.3], "std": [0.4]} and raw["input_shape"] == [1, 8, 8]
    loaded = load_model(tmp_path / "m.pt")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(loaded.model.eval()(x), model(x))
    ck = loaded.checkpoint
    assert ck.arch == "cnn-small" and ck.num_classes == 10 and ck.provenance["metrics"] == {"acc": 0.5}
    assert ck.compression == [{"name": "none"}] and loaded.source == "checkpoint"


def test_existing_output_needs_force(tmp_path):
    _save(tmp_path, _model())
    before = (tmp_path / "m.pt").read_bytes()
    with pytest.raises(CompressorError, match="`force`"):
        _save(tmp_path, _model(5) if False else _model())
    assert (tmp_path / "m.pt").read_bytes() == before
    _save(tmp_path, _model(), force=True)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(CompressorError, match="`trust_pickle`"):
        load_model(path, arch="cnn-small")
    assert not marker.exists()
    # plain pickle too (not a torch zip file)
    path2 = tmp_path / "evil2.pt"
    path2.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CompressorError):
        load_model(path2)
    assert not marker.exists()


def test_pickled_module_only_with_trust_pickle(tmp_path):
    model = _model()
    path = tmp_path / "module.pt"
    torch.save(model, path)
    with pytest.raises(CompressorError, match="pickled Python objects"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True)
    x = torch.rand(2, 1, 8, 8)
    assert loaded.source == "pickle" and torch.equal(loaded.model(x), model(x))


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.pt"

    def writer(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, writer)
    assert os.listdir(tmp_path) == []


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    _save(tmp_path, _model())
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CompressorError, match="corrupt or truncated"):
        load_model(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CompressorError):
        load_model(tmp_path / "junk.pt")


def test_plain_state_dict_needs_arch_and_must_fit(tmp_path):
    model = _model()
    sd = {f"module.{k}": v for k, v in model.state_dict().items() if "normalize" not in k}
    torch.save({"state_dict": sd}, tmp_path / "sd.pt")
    with pytest.raises(CompressorError, match="`arch`"):
        load_model(tmp_path / "sd.pt")
    kwargs = {"num_classes": 10, "in_chans": 1, "mean": [0.3], "std": [0.4]}
    loaded = load_model(tmp_path / "sd.pt", arch="cnn-small", arch_kwargs=kwargs)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.model.eval()(x), model(x))
    with pytest.raises(CompressorError, match="shape mismatch"):
        load_model(tmp_path / "sd.pt", arch="cnn-small", arch_kwargs={**kwargs, "num_classes": 7})
    with pytest.raises(CompressorError, match="missing keys"):
        load_model(tmp_path / "sd.pt", arch="resnet18", arch_kwargs={**kwargs, "in_chans": 1})


def test_torch_export_program_loads(tmp_path):
    model = _model()
    x = torch.rand(2, 1, 8, 8)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    loaded = load_model(tmp_path / "m.pt2", trust_program=True)
    assert loaded.source == "exported"
    assert torch.allclose(loaded.model(x), model(x), atol=1e-6)
