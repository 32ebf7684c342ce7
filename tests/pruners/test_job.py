"""`PruneJob`: frozen, built and checked once, its defaults decided in one place; the keyword form of `prune` and
`prune_model` builds the same values."""

from __future__ import annotations

import dataclasses

import pytest

from compressor import TrainConfig
from compressor.errors import CompressorError
from compressor.jobs import DataSource, ModelSource, RunOptions
from compressor.settings import job_from
from pruners import PhasePlan, PruneEval, PruneJob, SizeTarget, make_pruner, prune, prune_model
from pruners.config import PrunerConfig
from pruners.job import DEFAULT_SPARSITY, decide_sparsity, train_config_for


def job(method: str = "magnitude", **fields) -> PruneJob:
    return job_from(PruneJob, "prune", "model.pt", {"path": "model.pt", "method": method}, fields)


def test_a_job_is_frozen():
    j = job(options={"sparsity": 0.5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.method = "tscnc"
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.phases.epochs_prune = 3


def test_the_nm_default_is_decided_by_the_job_and_not_again_by_the_config():
    j = job(options={"pattern": "2:4"})
    assert j.pruner_options["sparsity"] == pytest.approx(0.5) and j.pruner_config.sparsity == pytest.approx(0.5)
    assert not j.sparsity_default and j.options == {"pattern": "2:4"}  # what was given stays as given
    with pytest.raises(CompressorError, match="no `sparsity` given"):
        PrunerConfig(pattern="2:4").validate()  # the config checks; it decides nothing
    assert decide_sparsity("magnitude", {"pattern": "2:4"}) == {"pattern": "2:4", "sparsity": 0.5}
    assert decide_sparsity("none", {}) == {"sparsity": 0.0}
    assert decide_sparsity("magnitude", {}) == {}


def test_other_defaults_are_decided_once():
    plain = job()
    assert plain.pruner_options["sparsity"] == DEFAULT_SPARSITY and plain.sparsity_default
    nm = job("none", transforms=["nm:2:4"])
    assert nm.pruner_config.pattern == "2:4" and nm.pruner_config.sparsity == pytest.approx(0.5)
    targeted = job("none", target_macs=0.5)
    assert targeted.specs == ("channels",) and targeted.target.settings()["macs"] == 0.5
    assert job("arlst", options={"sparsity": 0.5}).specs[0].startswith("separable-linear")
    assert job("admm", options={"sparsity": 0.5}).train_config.adv == "pgd"
    assert job("tscnc", options={"sparsity": 0.5}).train_config.crafting == "eval"  # TRADES crafts in eval mode
    assert train_config_for("hydra", adv="pgd", weight_decay=None).weight_decay == 1e-4


def test_keyword_form_and_job_form_give_the_same_job(tmp_path):
    config = TrainConfig(epochs=1, seed=3)
    by_hand = PruneJob("tscnc", ModelSource("model.pt", trust_pickle=True), {"sparsity": 0.8}, ("channels:0.5",),
                       config, DataSource("digits"), RunOptions(tmp_path / "o.pt", quiet=True),
                       PhasePlan(2, 1, lr=0.05), PruneEval("fgsm", 16), SizeTarget())
    assert job("tscnc", options={"sparsity": 0.8}, transforms=("channels:0.5",), config=config, dataset="digits",
               output=tmp_path / "o.pt", quiet=True, trust_pickle=True, epochs_prune=2, epochs_finetune=1, lr=0.05,
               eval_attack="fgsm", eval_n=16) == by_hand
    assert dataclasses.replace(by_hand) == by_hand  # rebuilding decides the same again


def test_unknown_field_is_a_type_error_naming_it(tmp_path, digits, tiny_cfg):
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        prune(tmp_path / "m.pt", "magnitude", epochs=3)
    with pytest.raises(TypeError, match="not both"):
        prune(job(options={"sparsity": 0.5}), quiet=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'state_path'"):
        prune_model(None, digits, make_pruner("magnitude", sparsity=0.5), tiny_cfg, state_path="x")
    with pytest.raises(TypeError, match="`plan` and its field 'epochs_prune'"):
        prune_model(None, digits, make_pruner("magnitude", sparsity=0.5), tiny_cfg, PhasePlan(), epochs_prune=1)


@pytest.mark.parametrize("fields,needle", [
    ({"options": {"sparsity": 0.0}}, "prunes nothing"),
    ({"options": {"sparsity": 1.5}}, "[0, 1)"),
    ({"options": {"pattern": "4:2"}}, "N:M"),
    ({"options": {"sparsity": 0.5, "lam": 1.0}}, "not an option of pruner magnitude"),
    ({"eval_attack": "pgdd"}, "pgdd"),
    ({"eval_n": 0}, "`eval_n` must be >= 1"),
    ({"target_macs": 2.0}, "target_macs"),
    ({"transforms": ["channels"]}, "channels"),
    ({"transforms": ["channels:0.5"], "target_macs": 0.5}, "both set the ratio"),
    ({"config": TrainConfig(lr=-1)}, "`lr`"),
    ({"num_classes": 0}, "`num_classes` must be at least 1"),
])
def test_bad_values_are_one_line_errors(fields, needle):
    with pytest.raises(CompressorError) as exc:
        job(**fields)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_a_program_is_refused_unopened():
    with pytest.raises(CompressorError, match="whose graph cannot be pruned"):
        PruneJob("magnitude", ModelSource("model.pt2"))
