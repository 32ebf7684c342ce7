"""Safe outputs: checked up front, locked while a run writes them, written to a temporary file, verified, then
atomically renamed into place (an existing file is only replaced by a complete, verified one)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import CompressorError


def _existing_ancestor(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(folder: str | Path) -> Path:
    """Fail with one line when files cannot be created in `folder` (or in the folder it would be made in)."""
    folder = Path(folder)
    base = folder if folder.exists() else _existing_ancestor(folder / "x")
    if not base.is_dir():
        raise CompressorError(f"{base} is a file, not a folder: choose another output location")
    try:  # a real attempt: permissions, read-only file systems and quotas all show here
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise CompressorError(f"cannot write to {base} ({exc.strerror or type(exc).__name__}): choose another output "
                              "location") from None
    return folder


def check_output(path: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite an existing output unless `force`, a folder as an output, or an unwritable location."""
    path = Path(path)
    if path.is_dir():
        raise CompressorError(f"{path} is a directory: give a file name for the output")
    if path.exists() and not force:
        raise CompressorError(f"{path} already exists: pass `force` to overwrite it, or choose another output")
    check_writable(_existing_ancestor(path))
    return path


def check_outputs(paths: Iterable[str | Path], force: bool = False) -> list[Path]:
    """`check_output` on every output of a command, before any work starts."""
    return [check_output(p, force) for p in paths]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); when the block completes, it is renamed onto `path`.

    Verify the temporary file inside the block: if the block raises, the temporary file is removed and
    an existing `path` is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, writer: Callable[[Path], None],
                 verify: Callable[[Path], None] | None = None) -> Path:
    """Call ``writer(tmp)``, then ``verify(tmp)``; only if both complete does the file replace `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)
        if verify is not None:
            verify(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def lock_path(path: str | Path) -> Path:
    """The lock file that guards the output `path` while a run writes it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(*paths: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on each output for the block; another run holding one is refused at once.

    The lock files (``.NAME.lock`` beside each output) are removed on release.
    """
    from filelock import FileLock, Timeout

    held: list[tuple[FileLock, Path]] = []
    try:
        for p in dict.fromkeys(Path(p).resolve() for p in paths):
            if p in _HELD:  # this process already holds it (a command calling another workflow)
                continue
            lp = lock_path(p)
            lp.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lp), timeout=0, thread_local=False, is_singleton=False)
            try:
                lock.acquire()
            except Timeout:
                raise CompressorError(f"another compressor run is writing {p} (lock {lp}): wait for it to finish, "
                                      "or choose another output") from None
            held.append((lock, lp))
            _HELD.add(p)
        yield
    finally:
        for lock, lp in reversed(held):
            lp.unlink(missing_ok=True)  # while still held, so no other run sees a stale file
            lock.release()
            _HELD.discard(lp.with_name(lp.name[1:].removesuffix(".lock")))


_HELD: set[Path] = set()  # outputs this process has locked


def main_process_lock(*paths: str | Path) -> contextlib.AbstractContextManager:
    """`output_lock` in the process that writes the outputs (rank 0 of a distributed run); nothing elsewhere."""
    return output_lock(*paths) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext()
