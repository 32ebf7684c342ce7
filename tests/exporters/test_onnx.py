"""ONNX export: every zoo model passes the checker and parity, masks are folded, bad input is one line."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from compressor.analysis import prunable_layers
from compressor.errors import CompressorError
from compressor.models import create_model, list_models
from exporters.onnx import export_onnx, onnx_initializers
from exporters.ort_session import make_session
from tests.conftest import cli

# every zoo model at a tiny width / input size (the export path is what is tested, not the width)
VGG_TINY = {"cfg": [8, "M", 16, "M"], "fc_width": 32}
ZOO = {
    "cnn-small": ({"in_chans": 1, "width": 4, "hidden": 16}, (1, 8, 8)),
    "convnet-mnist": ({"in_chans": 1, "width": 4, "hidden": 16, "image_size": 8}, (1, 8, 8)),
    "vgg16_bn": (VGG_TINY, (3, 16, 16)),
    "vgg16_bn_fc4096": (VGG_TINY, (3, 16, 16)),
    "resnet18": ({}, (3, 8, 8)),
    "preact_resnet18": ({}, (3, 8, 8)),
    "wrn_28_4": ({"depth": 10, "widen_factor": 1}, (3, 8, 8)),
    "wrn_34_10": ({"depth": 10, "widen_factor": 2}, (3, 8, 8)),
    "vit_small_cifar": ({"img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}, (3, 8, 8)),
    "tv:squeezenet1_1": ({}, (3, 32, 32)),
}
DEFAULT = ({}, (3, 32, 32))  # a zoo model added without a tiny configuration here is exported at full size
MASK_WORDS = ("mask", "parametrizations", "original", "scores")


@pytest.mark.parametrize("name", sorted(set(list_models()) | set(ZOO)))
@pytest.mark.slow
def test_every_zoo_model_exports_with_parity(name, tmp_path):
    kwargs, shape = ZOO.get(name, DEFAULT)
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **{"in_chans": shape[0], **kwargs}).eval()
    res = export_onnx(model, tmp_path / "m.onnx", input_shape=shape)
    assert res.max_abs_diff is not None and res.max_abs_diff <= 1e-4
    assert res.opset >= 17 and res.providers == ["CPUExecutionProvider"] and res.file_bytes > 0
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    sess = make_session(tmp_path / "m.onnx", threads=1)
    out = sess.run(None, {"input": np.random.rand(3, *shape).astype(np.float32)})[0]
    assert out.shape == (3, 7)  # a batch size the export never saw: the batch dimension is dynamic
    assert not any(w in n.lower() for n in onnx_initializers(tmp_path / "m.onnx") for w in MASK_WORDS)


@pytest.mark.slow
def test_masked_model_exports_folded_weights_only(tmp_path):
    from pruners.masking import MaskedLayers, is_masked

    torch.manual_seed(0)
    model = create_model("cnn-small", in_chans=1, width=4, hidden=16).eval()
    layers = MaskedLayers(model)
    layers.install()
    layers.set_masks([(torch.rand_like(m) > 0.9).float() for m in layers.masks])
    effective = {name: m.weight.detach().clone() for name, m in zip(layers.names, layers.modules)}
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
    res = export_onnx(model, tmp_path / "masked.onnx", input_shape=(1, 8, 8), sample_inputs=x)
    assert res.max_abs_diff <= 1e-4
    graph = onnx.load(str(tmp_path / "masked.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert not any(w in n.lower() for n in inits for w in MASK_WORDS), sorted(inits)
    assert not any(n.op_type == "Mul" and any("mask" in i for i in n.input) for n in graph.node)
    for name, w in effective.items():  # each weight once, with the model's shape and its zeros
        np.testing.assert_array_equal(inits[f"{name}.weight"], w.numpy())
    weights = sum(v.size for k, v in inits.items() if k.endswith(".weight"))
    assert weights == sum(w.numel() for w in effective.values())
    assert is_masked(model)  # the caller's model still carries its masks and still runs
    with torch.no_grad():
        assert torch.equal(model(x), ref)


@pytest.mark.slow
def test_transformed_models_export_with_their_shapes(tmp_path):
    transforms = pytest.importorskip("pruners.transforms", reason="structural transforms are not available")
    torch.manual_seed(0)
    model = create_model("cnn-small", in_chans=1, width=4, hidden=16).eval()
    before = {n: tuple(m.weight.shape) for n, m in prunable_layers(model)}
    context = transforms.TransformContext(input_shape=(1, 8, 8))
    for spec in ("channels:0.5,round_to=2", "separable-linear"):  # channels removed, then Kronecker layers
        transforms.parse_transform(spec).apply(model, context)
    assert any(type(m).__name__ == "KroneckerLinear" for m in model.modules())
    x = torch.rand(6, 1, 8, 8)
    res = export_onnx(model.eval(), tmp_path / "t.onnx", input_shape=(1, 8, 8), sample_inputs=x)
    assert res.max_abs_diff <= 1e-4
    shapes = onnx_initializers(tmp_path / "t.onnx")
    after = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    assert after != before  # the transform changed the architecture ...
    # ... and the export holds exactly the transformed weights (the ONNX optimiser may pre-transpose a factor)
    exported = [s for n, s in shapes.items() if len(s) >= 2 and not n.startswith("normalize.")]
    assert sorted(tuple(sorted(s)) for s in exported) == sorted(tuple(sorted(s)) for s in after.values())


@torch.library.custom_op("compressor_test::odd_scale", mutates_args=())
def odd_scale(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@odd_scale.register_fake
def _(x):
    return torch.empty_like(x)


class OddLayer(nn.Module):
    def forward(self, x):
        return odd_scale(x)


class WithOddOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.odd = OddLayer()
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.odd(self.conv(x)).flatten(1))


@pytest.mark.slow
def test_an_op_onnx_cannot_express_names_the_op_and_the_layer(tmp_path):
    with pytest.raises(CompressorError) as exc:
        export_onnx(WithOddOp().eval(), tmp_path / "odd.onnx", input_shape=(1, 8, 8))
    msg = str(exc.value)
    assert "compressor_test.odd_scale" in msg and "'odd' (OddLayer)" in msg and "\n" not in msg
    assert not (tmp_path / "odd.onnx").exists()


def test_bad_options_and_existing_output(tmp_path):
    model = create_model("cnn-small", in_chans=1, width=4, hidden=16).eval()
    with pytest.raises(CompressorError, match="`opset` 16 is too old"):
        export_onnx(model, tmp_path / "a.onnx", input_shape=(1, 8, 8), opset=16)
    with pytest.raises(CompressorError, match="fp32 graphs"):
        export_onnx(model, tmp_path / "a.onnx", input_shape=(1, 8, 8), precision="fp16")
    (tmp_path / "a.onnx").write_text("keep")
    with pytest.raises(CompressorError, match="already exists"):
        export_onnx(model, tmp_path / "a.onnx", input_shape=(1, 8, 8))
    assert (tmp_path / "a.onnx").read_text() == "keep"


@pytest.mark.slow
def test_cli_export_onnx_prints_parity_on_real_images(capsys, digits_ckpt, tmp_path):
    code, out, err = cli(capsys, "export", str(digits_ckpt), "--format", "onnx", "-o", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert "parity: max |delta logit| =" in out and "digits test[:64]" in out and "CPUExecutionProvider" in out
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["compressor.input_shape"] == "1,8,8" and meta["compressor.batch_sizes"] == "1,64"


@pytest.mark.slow
def test_cli_parity_failure_exits_2_with_the_measured_error(capsys, digits_ckpt, tmp_path, monkeypatch):
    from exporters import onnxruntime as ort_mod

    real = ort_mod.OnnxRunner.__call__
    monkeypatch.setattr(ort_mod.OnnxRunner, "__call__", lambda self, x: real(self, x) + 3e-3)  # a wrong runtime
    code, out, err = cli(capsys, "export", str(digits_ckpt), "--format", "onnx", "-o", str(tmp_path / "m.onnx"))
    assert code == 2 and "max |delta logit| = 0.003 > tolerance 0.0001" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()  # a failed export leaves nothing to deploy by mistake


def test_cli_bad_format_precision_and_missing_extra(capsys, digits_ckpt, tmp_path):
    code, _, err = cli(capsys, "export", str(digits_ckpt), "--format", "onx", "-o", str(tmp_path / "m.onnx"))
    assert code == 2 and "did you mean 'onnx'" in err
    code, _, err = cli(capsys, "export", str(digits_ckpt), "--format", "onnx", "--precision", "fp16",
                       "-o", str(tmp_path / "m.onnx"))
    assert code == 2 and "supports --precision fp32" in err
    code, _, err = cli(capsys, "export", str(digits_ckpt), "--format", "onnx", "-o", str(tmp_path / "m.engine"))
    assert code == 2 and "writes .onnx files" in err
    assert not list(tmp_path.iterdir())
