"""`prune` and `eval` on a dataset given as a training file and a test file (``npz:TRAIN,TEST``)."""

import json

import numpy as np
import pytest

from compressor.data import load_dataset
from tests.conftest import cli, untrained_digits_checkpoint


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """digits written as two files: its training part and its test part (float pixels in [0, 1])."""
    folder = tmp_path_factory.mktemp("pair")
    d = load_dataset("digits")
    for name, split in (("train", d.train), ("test", d.test)):
        np.savez(folder / f"{name}.npz", x=split.float_images().numpy(), y=split.y.numpy())
    return folder, len(d.test)


@pytest.mark.slow
def test_prune_and_eval_on_a_train_test_pair(pair, tmp_path, capsys):
    folder, n_test = pair
    spec = f"npz:{folder / 'train.npz'},{folder / 'test.npz'}"
    dense = untrained_digits_checkpoint(tmp_path)
    out = tmp_path / "p.pt"
    code, stdout, err = cli(capsys, "prune", str(dense), "-m", "magnitude", "--dataset", spec, "--epochs-prune", "1",
                            "--epochs-finetune", "1", "--steps", "2", "--val-n", "32", "--eval-n", "40",
                            "--device", "cpu", "-o", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["dataset"] == spec
    code, stdout, err = cli(capsys, "eval", str(out), "--dataset", spec, "--attacks", "fgsm", "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    assert rep["n"] == n_test, rep  # the whole test file, not a split of it
