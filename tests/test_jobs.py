"""Typed jobs: frozen, checked once when built, the same from keywords as built by hand; the eval command builds
its attacks and checks its output once."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import compressor.jobs
from compressor import TrainConfig, evaluate_model, open_model, train
from compressor.checkpoint import save_checkpoint
from compressor.errors import CompressorError
from compressor.jobs import DataSource, EvalOptions, ModelSource, RunOptions, TrainJob
from compressor.settings import job_from
from compressor.models import create_model
from compressor.workflows import model_kwargs

from .conftest import cli


@pytest.fixture
def untrained(digits, tmp_path):
    """An untrained cnn-small checkpoint that records digits (evaluating it takes a fraction of a second)."""
    torch.manual_seed(0)
    kwargs = model_kwargs(digits.info)
    path = tmp_path / "m.pt"
    save_checkpoint(path, create_model("cnn-small", **kwargs), arch="cnn-small", arch_kwargs=kwargs,
                    dataset=digits.info.as_dict())
    return path


def test_jobs_are_frozen(tmp_path):
    job = TrainJob("cnn-small", TrainConfig(), DataSource("digits"), RunOptions(tmp_path / "m.pt"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.arch = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.run.force = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelSource("m.pt").trust_pickle = True


def test_keyword_form_and_job_form_give_the_same_job(tmp_path):
    config = TrainConfig(epochs=2)
    by_hand = TrainJob("cnn-small", config, DataSource("digits", download=True),
                       RunOptions(tmp_path / "m.pt", force=True, quiet=True), arch_kwargs={"width": 4})
    positional = {"arch": "cnn-small", "dataset": "digits", "output": str(tmp_path / "m.pt"), "config": config}
    from_keywords = job_from(TrainJob, "train", "cnn-small", positional,
                             {"download": True, "force": True, "quiet": True, "arch_kwargs": {"width": 4}})
    assert from_keywords == by_hand
    assert job_from(TrainJob, "train", by_hand, {"arch": by_hand}, {}) is by_hand


def test_unknown_or_doubled_keyword_is_a_type_error_naming_it(tmp_path, untrained):
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs_prune'"):
        train("cnn-small", "digits", tmp_path / "new.pt", TrainConfig(), epochs_prune=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'trust_everything'"):
        open_model(untrained, trust_everything=True)
    with pytest.raises(TypeError, match="`options` and its field 'n'"):
        evaluate_model(torch.nn.Identity(), None, ["fgsm"], EvalOptions(), n=3)
    job = TrainJob("cnn-small", TrainConfig(), DataSource("digits"), RunOptions(tmp_path / "new.pt"))
    with pytest.raises(TypeError, match="not both"):
        train(job, quiet=True)
    assert not (tmp_path / "new.pt").exists()


@pytest.mark.parametrize("build,needle", [
    (lambda p: ModelSource(p, num_classes=0), "`num_classes` must be at least 1"),
    (lambda p: TrainJob("cnn-small", TrainConfig(adv="nope"), DataSource("digits"), RunOptions(p)), "`adv`"),
    (lambda p: TrainJob("cnn-small", TrainConfig(), DataSource(), RunOptions(p)), "no `dataset`"),
    (lambda p: TrainJob("cnn-small", TrainConfig(), DataSource("digits")), "no `output`"),
    (lambda p: EvalOptions(n=0), "`n` must be >= 1"),
    (lambda p: EvalOptions(batch_size=0), "`batch_size` must be >= 1"),
    (lambda p: EvalOptions(eps=8), "larger than the [0, 1] pixel range"),
    (lambda p: EvalOptions(save_adv=p.parent), "is a directory"),
])
def test_bad_values_are_one_line_errors_when_the_job_is_built(tmp_path, build, needle):
    with pytest.raises(CompressorError) as exc:
        build(tmp_path / "m.pt")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_model_source_keeps_the_open_model_keywords(untrained, digits):
    source = ModelSource(arch="cnn-small", num_classes=10)
    assert source.path is None and source.at(untrained).path == untrained
    assert set(source.options()) == {f.name for f in dataclasses.fields(ModelSource)} - {"path"}
    loaded, data = open_model(ModelSource(untrained), DataSource("digits"))
    again, _ = open_model(untrained, dataset="digits")
    assert data.info.name == digits.info.name and loaded.checkpoint.arch == again.checkpoint.arch == "cnn-small"


def test_eval_builds_each_attack_once_and_checks_its_output_once(untrained, tmp_path, capsys, monkeypatch):
    built, checked = [], []
    real_build, real_check = compressor.jobs.build_attack, compressor.jobs.check_output
    monkeypatch.setattr(compressor.jobs, "build_attack", lambda *a, **k: built.append(a[0]) or real_build(*a, **k))
    monkeypatch.setattr(compressor.jobs, "check_output", lambda *a, **k: checked.append(a[0]) or real_check(*a, **k))
    out = tmp_path / "adv.npz"
    code, stdout, err = cli(capsys, "eval", str(untrained), "--attacks", "fgsm,pgd2", "--eps", "0.1", "--n", "8",
                            "--save-adv", str(out), "--json")
    assert code == 0, err
    assert built == ["fgsm", "pgd2"] and checked == [out] and out.is_file()
    res = json.loads(stdout)
    assert list(res["attacks"]) == ["fgsm", "pgd2"] and res["protocol"]["attacks"]["pgd2"]["eps"] == 0.1
