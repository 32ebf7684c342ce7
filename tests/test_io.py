"""Safe outputs: verified before they replace anything, checked for writability up front, locked while written."""

from __future__ import annotations

import os

import pytest

from compressor.errors import CompressorError
from compressor.io import (atomic_write, check_output, check_writable, lock_path, main_process_lock, output_lock)


def test_failed_verification_keeps_the_old_file(tmp_path):
    out = tmp_path / "good.onnx"
    out.write_bytes(b"old")

    def verify(tmp):
        assert tmp.suffix == ".onnx" and tmp.read_bytes() == b"new"  # tools that need the suffix see it
        raise CompressorError("parity failed")

    with pytest.raises(CompressorError, match="parity"):
        atomic_write(out, lambda tmp: tmp.write_bytes(b"new"), verify)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx"]
    atomic_write(out, lambda tmp: tmp.write_bytes(b"new"), lambda tmp: None)
    assert out.read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_is_refused_up_front(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CompressorError, match="cannot write to"):
            check_output(locked / "sub" / "model.pt")
    finally:
        locked.chmod(0o700)


def test_output_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CompressorError, match="is a file, not a folder"):
        check_output(tmp_path / "file" / "model.pt")
    with pytest.raises(CompressorError, match="is a file, not a folder"):
        check_writable(tmp_path / "file")


def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    out = tmp_path / "model.pt"
    with output_lock(out):
        assert lock_path(out).exists()
        from filelock import FileLock, Timeout

        other = FileLock(str(lock_path(out)), timeout=0, is_singleton=False, thread_local=False)
        with pytest.raises(Timeout):  # what another process sees
            other.acquire()
        with output_lock(out):  # the same process (a command calling another workflow) is let through
            pass
        assert lock_path(out).exists()
    assert not lock_path(out).exists()  # nothing left behind
    with main_process_lock(out):
        pass


def test_lock_held_elsewhere_is_one_line(tmp_path):
    from filelock import FileLock

    out = tmp_path / "model.pt"
    other = FileLock(str(lock_path(out)), timeout=0, is_singleton=False, thread_local=False)
    other.acquire()
    try:
        with pytest.raises(CompressorError, match="another compressor run is writing"):
            with output_lock(out):
                pass
    finally:
        other.release()
