"""`update_every`: mask updates every U optimiser steps of the prune phase, each on the current weights."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from compressor.errors import CompressorError
from compressor.training import TrainConfig
from pruners import make_pruner, prune_model
from pruners.base import Phase

from .conftest import cnn


def _plain(schedule: str, rounds: int = 2, every: int = 4, steps_per_epoch: int = 10, epochs: int = 2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 50), nn.ReLU(), nn.Linear(50, 10))
    pruner = make_pruner("magnitude", sparsity=0.9, schedule=schedule, rounds=rounds, update_every=every)
    pruner.prepare(model, steps_per_epoch=steps_per_epoch)
    pruner.start_phase(pruner.plan(epochs, 0)[0])
    calls = []
    scores = pruner.scores
    pruner.scores = lambda: calls.append(pruner.phase_step) or scores()
    return model, pruner, calls


def _sparsity(pruner) -> float:
    kept, total = zip(*pruner.layers.counts())
    return 1 - sum(kept) / sum(total)


def test_cubic_masks_move_every_update_every_steps_and_reach_the_target():
    _, pruner, calls = _plain("cubic")  # 20 steps, an update every 4: at 0, 4, 8, 12, 16
    seen = []
    for epoch in range(2):
        pruner.epoch_begin(epoch)
        for _ in range(10):
            seen.append(_sparsity(pruner))
            pruner.step()
    assert calls == [0, 4, 8, 12, 16]  # steps without an update do not score (nor synchronise)
    expected = [0.9 * (1 - (1 - t) ** 3) for t in (0.2, 0.4, 0.6, 0.8, 1.0)]
    assert [u["step"] for u in pruner.mask_log] == calls
    assert [u["sparsity"] for u in pruner.mask_log] == pytest.approx(expected)
    assert seen[::4] == pytest.approx(expected, abs=0.002) and seen[-1] == pytest.approx(0.9, abs=0.002)
    assert pruner.at_target and pruner.final_masks() is None
    assert pruner.epoch_metrics() == {"mask_updates": 5}
    assert pruner.summary() == {"steps_per_epoch": 10, "mask_updates": pruner.mask_log}


def test_every_update_rescores_the_current_weights():
    model, pruner, _ = _plain("cubic")
    pruner.epoch_begin(0)
    kept = pruner.layers.masks[0].bool()
    rows = kept.nonzero()[:20]
    with torch.no_grad():  # weights that training shrank after the first update go at the next one
        pruner.layers.stored[0][rows[:, 0], rows[:, 1]] = 1e-6
    for _ in range(4):
        pruner.step()
    assert len(pruner.mask_log) == 2
    assert not pruner.layers.masks[0][rows[:, 0], rows[:, 1]].any()


def test_iterative_rounds_on_steps_and_their_limits():
    _, pruner, calls = _plain("iterative", rounds=3)  # 3 rounds in 2 epochs: possible on steps
    for epoch in range(2):
        pruner.epoch_begin(epoch)
        for _ in range(10):
            pruner.step()
    assert calls == [0, 8, 16]
    assert [u["sparsity"] for u in pruner.mask_log] == pytest.approx([1 - 0.1 ** (k / 3) for k in (1, 2, 3)])
    with pytest.raises(CompressorError, match="`update_every` leaves 2"):
        _plain("iterative", rounds=3, every=15)  # points at 0 and 15 only


def test_a_resumed_or_later_epoch_does_not_move_the_masks_again():
    _, pruner, calls = _plain("cubic", every=5)  # an update at the last step of epoch 0 (step 10 = 2 * 5)
    pruner.epoch_begin(0)
    for _ in range(10):
        pruner.step()
    state = pruner.state_dict()
    assert calls == [0, 5, 10]
    pruner.epoch_begin(1)
    assert calls == [0, 5, 10]
    _, again, calls2 = _plain("cubic", every=5)
    again.load_state_dict(state)
    again.epoch_begin(1)
    assert calls2 == [] and again.mask_log == pruner.mask_log


def test_update_every_needs_steps_per_epoch_and_a_whole_number():
    pruner = make_pruner("magnitude", sparsity=0.5, schedule="cubic", update_every=3)
    pruner.prepare(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(CompressorError, match="steps_per_epoch"):
        pruner.start_phase(Phase("prune", 1, 0.01))
    for bad in (-1, 1.5):
        with pytest.raises(CompressorError, match="`update_every`"):
            make_pruner("magnitude", sparsity=0.5, update_every=bad)
    assert make_pruner("tscnc", sparsity=0.5).config.update_every == 0  # the default: epoch boundaries


def test_tscnc_rescores_on_fresh_pgd_examples_at_every_update(digits, monkeypatch):
    import pruners.tscnc as tscnc

    seeds = []
    real = tscnc.taylor_importance
    monkeypatch.setattr(tscnc, "taylor_importance", lambda *a, **k: seeds.append(k["seed"]) or real(*a, **k))
    small = replace(digits, train=digits.train.head(256), val=digits.val.head(16))
    cfg = TrainConfig(batch_size=64, adv="trades", eps=0.1, steps=1, val_steps=1, val_n=16, device="cpu",
                      log_every=100)  # 4 steps per epoch
    pruner = make_pruner("tscnc", sparsity=0.9, schedule="cubic", update_every=3, score_samples=32)
    res = prune_model(cnn(digits), small, pruner, cfg, epochs_prune=2, epochs_finetune=0, track=False, quiet=True)
    updates = res["summary"]["mask_updates"]
    assert [u["step"] for u in updates] == [0, 3, 6] and updates[-1]["sparsity"] == pytest.approx(0.9)
    assert len(set(seeds)) == 3  # a new draw of PGD examples each time
    assert [h["mask_updates"] for h in res["history"]] == [2, 3]
    assert res["summary"]["steps_per_epoch"] == 4 and res["sparsity"] == pytest.approx(0.9, abs=0.001)


def test_hydra_target_follows_the_steps(digits, tiny_cfg):
    from compressor.training import Trainer
    from pruners import PrunerCallback

    pruner = make_pruner("hydra", sparsity=0.8, schedule="cubic", update_every=2)
    cb = PrunerCallback(pruner, Phase("prune", 1, 0.1))
    trainer = Trainer(cnn(digits), digits, tiny_cfg, [cb], quiet=True)
    trainer.start()
    trainer.begin_epoch()
    x, y = next(iter(trainer.loader))
    seen = []
    for _ in range(len(trainer.loader)):
        seen.append(_sparsity(pruner))
        trainer.training_step(x, y)
    assert len(trainer.loader) == 8  # points at 0, 2, 4, 6: the TopK target rises every 2 steps
    assert seen == sorted(seen) and seen[0] == pytest.approx(0.8 * (1 - 0.75 ** 3), abs=0.001)
    assert seen[-1] == pytest.approx(0.8, abs=0.001) and pruner.at_target


@pytest.mark.slow
def test_cli_report_records_the_schedule_and_the_lcc_shrink(tmp_path, capsys):
    import json

    from tests.conftest import cli, untrained_digits_checkpoint

    ckpt = untrained_digits_checkpoint(tmp_path)
    code, stdout, err = cli(capsys, "prune", str(ckpt), "-m", "tscnc", "--sparsity", "0.8", "-o",
                            str(tmp_path / "p.pt"), "--epochs-prune", "1", "--epochs-finetune", "1", "--steps", "1",
                            "--val-n", "32", "--eval-n", "32", "--device", "cpu", "--score-samples", "64",
                            "--schedule", "cubic", "--update-every", "3", "--lcc", "weight", "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    assert rep["config"]["update_every"] == 3 and rep["config"]["lcc"] == "weight"
    steps = rep["updates"]["steps_per_epoch"]
    assert [u["step"] for u in rep["updates"]["mask_updates"]] == list(range(0, steps, 3))
    assert set(rep["lcc_shrink"]) == {r["layer"] for r in rep["layers"]} and min(rep["lcc_shrink"].values()) > 0
    assert [h["mask_updates"] for h in rep["history"]] == [len(range(0, steps, 3))] * 2
    assert rep["history"][-1]["lcc_shrink"] == rep["lcc_shrink"]


@pytest.mark.slow
def test_resume_replays_the_step_schedule_and_the_shrink(tmp_path, capsys):
    import json

    from tests.conftest import cli, untrained_digits_checkpoint

    ckpt = untrained_digits_checkpoint(tmp_path)
    args = ["prune", str(ckpt), "-m", "tscnc", "--sparsity", "0.8", "--epochs-prune", "2", "--epochs-finetune", "1",
            "--steps", "1", "--val-n", "32", "--eval-n", "32", "--device", "cpu", "--score-samples", "64",
            "--schedule", "cubic", "--update-every", "5", "--json"]
    code, out_a, err = cli(capsys, *args, "-o", str(tmp_path / "a.pt"), "--keep-state")
    assert code == 0, err
    (tmp_path / "a.pt.prune.state").rename(tmp_path / "b.pt.prune.state")  # interrupted between the phases
    code, out_b, err = cli(capsys, *args, "-o", str(tmp_path / "b.pt"), "--resume")
    assert code == 0, err
    a, b = json.loads(out_a), json.loads(out_b)
    assert a["updates"] == b["updates"] and a["lcc_shrink"] == pytest.approx(b["lcc_shrink"])
    sa, sb = (torch.load(tmp_path / p, weights_only=True)["state_dict"] for p in ("a.pt", "b.pt"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
