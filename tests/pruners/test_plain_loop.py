"""The README's plain-PyTorch-loop example, run exactly as written (extracted by its marker) on digits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from pruners.allocation import keep_count

pytestmark = pytest.mark.slow  # see `make test-fast`: left out of the inner-loop tier

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- plain-loop-example -->"


def readme_example() -> str:
    """The first ```python block after the marker in README.md."""
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its plain-loop example marker"
    found = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    assert found, "no ```python block after the plain-loop marker"
    return found.group(1)


def test_readme_plain_loop_prunes_a_user_model_with_tscnc(digits):
    torch.manual_seed(0)
    x = digits.train.float_images()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, digits.train.y), batch_size=32,
                                         shuffle=True, generator=torch.Generator().manual_seed(0))
    scope: dict = {"train_loader": loader, "__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), scope)  # noqa: S102  (our own README)
    model, report = scope["model"], scope["report"]

    from compressor.analysis import prunable_layers

    layers = dict(prunable_layers(model))
    assert layers and all(type(m) in (nn.Conv2d, nn.Linear) for m in layers.values())  # folded: no masks left
    assert not any("parametrizations" in k for k in model.state_dict())
    total = sum(m.weight.numel() for m in layers.values())
    nonzero = sum(int(torch.count_nonzero(m.weight)) for m in layers.values())
    assert nonzero == keep_count(total, 0.9)  # global allocation: exactly 90 % of the prunable weights removed
    assert report["sparsity"] == pytest.approx(0.9, abs=1 / total)

    model.eval()
    with torch.no_grad():
        accuracy = float((model(digits.test.float_images()).argmax(1) == digits.test.y).float().mean())
    assert accuracy > 0.5  # ten classes: chance is 0.1


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def test_hydra_in_a_plain_loop_trains_scores_then_weights(digits):
    from pruners import make_pruner

    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=5.0)  # an untrained model has tiny score gradients
    pruner = make_pruner("hydra", sparsity=0.8).prepare(model, optimizer=opt)
    prune, finetune = pruner.plan(epochs_prune=1, epochs_finetune=1)
    x, y = digits.train.float_images()[:64], digits.train.y[:64]

    def steps(n: int) -> None:
        for _ in range(n):
            loss = torch.nn.functional.cross_entropy(model(x), y) + pruner.regularizer()
            opt.zero_grad()
            loss.backward()
            opt.step()
            pruner.step()

    pruner.start_phase(prune)
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["params"] == pruner.layers.scores
    weights = [w.detach().clone() for w in pruner.layers.stored]
    bn = model[1].weight.detach().clone()
    first = [m.clone() for m in pruner.layers.masks]
    pruner.epoch_begin(0)
    steps(3)
    assert all(torch.equal(a, b) for a, b in zip(weights, pruner.layers.stored))  # weights frozen
    assert not torch.equal(bn, model[1].weight)  # BatchNorm trains during the score search (HYDRA's default)
    assert any(not torch.equal(a, b) for a, b in zip(first, pruner.layers.masks))  # the scores moved the masks

    pruner.start_phase(finetune)
    assert len(opt.param_groups) == 1 and all(p.requires_grad for p in model.parameters())
    masks = [m.bool().clone() for m in pruner.layers.masks]
    pruner.epoch_begin(0)
    steps(2)
    for w, m in zip(pruner.layers.stored, masks):
        assert torch.count_nonzero(w.detach()[~m]) == 0
    report = pruner.squash_mask()
    assert [r["sparsity"] for r in report["layers"]] == pytest.approx([0.8, 0.8], abs=0.01)


def test_missing_loop_inputs_are_one_line_errors():
    from compressor.errors import CompressorError
    from pruners import make_pruner

    tscnc = make_pruner("tscnc", sparsity=0.5).prepare(_net())
    tscnc.start_phase(tscnc.plan(2, 0)[0])
    with pytest.raises(CompressorError, match="score_data= .* and score_loss="):
        tscnc.epoch_begin(0)
    admm = make_pruner("admm", sparsity=0.5).prepare(_net())
    admm.start_phase(admm.plan(1, 0)[0])
    with pytest.raises(CompressorError, match="steps_per_epoch="):
        admm.epoch_begin(0)
    with pytest.raises(CompressorError, match="before pruner.prepare"):
        make_pruner("magnitude", sparsity=0.5).start_phase(admm.plan(1, 0)[0])
