"""Writes that fail or are killed leave nothing behind, outputs never replace links or inputs, and the
fingerprints a resumed run checks change exactly when the inputs do."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compressor.checkpoint import save_checkpoint
from compressor.data import ArraySplit, DataBundle
from compressor.errors import CompressorError
from compressor.filekind import file_kind
from compressor.io import TMP_MARK, atomic_write, atomic_write_text, check_output, file_digest

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_full_disk_while_saving_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "m.pt").write_bytes(b"precious")
    real_save = torch.save
    # the disk is full, as torch's writer meets it
    monkeypatch.setattr(torch, "save", lambda obj, f, **kw: real_save(obj, "/dev/full", **kw))
    with pytest.raises(CompressorError, match=r"cannot write .*m\.pt \(.*\): free some space"):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2), arch="x", arch_kwargs={}, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert (tmp_path / "m.pt").read_bytes() == b"precious"


def test_os_error_while_writing_is_one_line(tmp_path):
    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(CompressorError, match="No space left on device"):
        atomic_write(tmp_path / "r.json", full)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_runs_are_removed_on_the_next_save(tmp_path):
    dead = tmp_path / f".m.pt{TMP_MARK}{_dead_pid()}-0.pt"
    live = tmp_path / f".m.pt{TMP_MARK}{os.getpid()}-99.pt"  # this process: still writing, kept
    other = tmp_path / f".n.pt{TMP_MARK}{_dead_pid()}-0.pt"  # another output's: not ours to touch
    for p in (dead, live, other):
        p.write_bytes(b"")
    atomic_write_text(tmp_path / "m.pt", "new")
    assert not dead.exists() and live.exists() and other.exists()
    assert (tmp_path / "m.pt").read_text() == "new"


def test_sigkill_during_a_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    script = ("import sys, time; from compressor.io import atomic_write; "
              "atomic_write(sys.argv[1], lambda tmp: (tmp.write_bytes(b'half'), time.sleep(60)))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "m.pt")],
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 60
    while not list(tmp_path.glob(f".m.pt{TMP_MARK}*")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(tmp_path.glob(f".m.pt{TMP_MARK}*"))
    assert len(left) == 1 and f"{TMP_MARK}{proc.pid}-" in left[0].name  # named so that it is recognised
    atomic_write_text(tmp_path / "m.pt", "complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_outputs_that_are_links_or_inputs_are_refused(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"model")
    os.link(tmp_path / "in.pt", tmp_path / "hard.pt")
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "nowhere.pt")
    with pytest.raises(CompressorError, match="symbolic link"):
        check_output(tmp_path / "dangling.pt", force=True)
    for out in ("in.pt", "hard.pt"):
        with pytest.raises(CompressorError, match="is the input"):
            check_output(tmp_path / out, force=True, inputs=[tmp_path / "in.pt"])
    assert check_output(tmp_path / "new.pt", inputs=[tmp_path / "in.pt"]) == tmp_path / "new.pt"


def test_fingerprints_change_with_the_inputs(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(40) % 4

    def bundle(x: torch.Tensor, y: torch.Tensor) -> DataBundle:
        from compressor.data import DatasetInfo

        info = DatasetInfo("t", 4, (1, 4, 4), (0.5,), (0.5,))
        return DataBundle(info, ArraySplit(x[:30], y[:30]), ArraySplit(x[30:35], y[30:35]),
                          ArraySplit(x[35:], y[35:]))

    base = bundle(x, y).fingerprint()
    assert bundle(x.clone(), y.clone()).fingerprint() == base
    assert bundle(x, (y + 1) % 4).fingerprint() != base  # relabelled
    brighter = x.clone()
    brighter[0] //= 2
    assert bundle(brighter, y).fingerprint() != base  # other pixels in the sample
    (tmp_path / "a").write_bytes(b"one")
    digest = file_digest(tmp_path / "a")
    (tmp_path / "a").write_bytes(b"two")
    assert file_digest(tmp_path / "a") != digest


def test_file_kinds(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "a.pt")
    (tmp_path / "e").write_bytes(b"")
    os.mkfifo(tmp_path / "f")
    assert [file_kind(tmp_path / n) for n in ("a.pt", "e", "f")] == ["torch-save", "empty", "fifo"]
