"""Safe outputs: checked up front, locked while a run writes them, written to a temporary file, verified, then
atomically renamed into place (an existing file is only replaced by a complete, verified one)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
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


def check_output(path: str | Path, force: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse to overwrite an existing output unless `force`, a folder or a symbolic link as an output, an output
    that is one of the command's `inputs` (even with `force`), or an unwritable location."""
    path = Path(path)
    if path.is_symlink():  # dangling or not: writing would replace the link, or whatever it points to
        raise CompressorError(f"{path} is a symbolic link (to {os.readlink(path)}): give the path of a real file, "
                              "or remove the link")
    if path.is_dir():
        raise CompressorError(f"{path} is a directory: give a file name for the output")
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise CompressorError(f"{path} is the input {source} itself: writing it would destroy the input; "
                                  "choose another output")
    if path.exists() and not force:
        raise CompressorError(f"{path} already exists: pass `force` to overwrite it, or choose another output")
    check_writable(_existing_ancestor(path))
    return path


def check_outputs(paths: Iterable[str | Path], force: bool = False, inputs: Iterable[str | Path] = ()) -> list[Path]:
    """`check_output` on every output of a command, before any work starts."""
    inputs = list(inputs)
    return [check_output(p, force, inputs) for p in paths]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


TMP_MARK = ".tmp-"  # temporary files are .NAME.tmp-PID-N.SUFFIX: recognisable, and stale once PID is gone
_counter = itertools.count()


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files of writes to `path` whose process died before finishing (e.g. killed mid-save)."""
    path = Path(path)
    prefix = f".{path.name}{TMP_MARK}"
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        pid = p.name[len(prefix):].split("-", 1)[0]
        if p.name.startswith(prefix) and pid.isdigit() and not process_alive(int(pid)) and not p.is_symlink() \
                and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# what torch.save's C++ writer raises (as RuntimeError) when the file system refuses a write
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container", "iostream error", "file write failed")


def _write_failure(path: Path, exc: BaseException) -> CompressorError | None:
    """One line for a failed write (a full disk, a quota, an I/O error), or None for an error that is not one."""
    text = str(exc)
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
    elif isinstance(exc, RuntimeError) and any(m in text for m in _TORCH_WRITE_FAILURES):
        reason = "the write failed"  # torch's archive writer does not say why
    else:
        return None
    with contextlib.suppress(OSError):
        if shutil.disk_usage(path.parent).free < 1 << 20:
            reason = "no space left on device"
    return CompressorError(f"cannot write {path} ({reason}): free some space or choose another output location; "
                           f"nothing was written")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); when the block completes, it is renamed onto `path`.

    Verify the temporary file inside the block: if the block raises, the temporary file is removed and
    an existing `path` is left exactly as it was. A write that fails for lack of space (or another OS error)
    is one CompressorError. Temporary files left by killed runs are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp_path = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{next(_counter)}{path.suffix}")
    try:
        os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise _write_failure(path, exc) from None
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # created 0600 while being written; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        failure = _write_failure(path, exc)
        if failure is not None:
            raise failure from None
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


def file_digest(path: str | Path, length: int = 16) -> str:
    """The start of a file's SHA-256 (a fingerprint: a resumed run refuses a source file replaced since)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def lock_path(path: str | Path) -> Path:
    """The lock file that guards the output `path` while a run writes it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _check_lock_file(lp: Path) -> None:
    if lp.is_symlink() or (lp.exists() and not lp.is_file()):
        kind = "a symbolic link" if lp.is_symlink() else "a directory" if lp.is_dir() else "not a regular file"
        raise CompressorError(f"the lock file {lp} is {kind}, which no compressor run makes: remove it, or choose "
                              "another output")


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created, deepest first."""
    made = []
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    for f in reversed(made):
        f.mkdir(exist_ok=True)
    return made


@contextlib.contextmanager
def output_lock(*paths: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on each output for the block; another run holding one is refused at once.

    The lock files (``.NAME.lock`` beside each output) are removed on release, and so are the folders made for
    them when the block wrote nothing there (a refused run leaves no folders behind).
    """
    from filelock import FileLock, Timeout

    held: list[tuple[FileLock, Path]] = []
    made: list[Path] = []
    try:
        for p in dict.fromkeys(Path(p).resolve() for p in paths):
            if p in _HELD:  # this process already holds it (a command calling another workflow)
                continue
            lp = lock_path(p)
            _check_lock_file(lp)
            made += _make_parents(lp.parent)
            lock = FileLock(str(lp), timeout=0, thread_local=False, is_singleton=False)
            try:
                lock.acquire()
            except Timeout:
                raise CompressorError(f"another compressor run is writing {p} (lock {lp}): wait for it to finish, "
                                      "or choose another output") from None
            except OSError as exc:
                raise CompressorError(f"cannot create the lock file {lp} ({exc.strerror or type(exc).__name__}): "
                                      "choose another output location") from None
            held.append((lock, lp))
            _HELD.add(p)
        yield
    finally:
        for lock, lp in reversed(held):
            lp.unlink(missing_ok=True)  # while still held, so no other run sees a stale file
            lock.release()
            _HELD.discard(lp.with_name(lp.name[1:].removesuffix(".lock")))
        for folder in made:  # deepest first; a folder the run wrote into is not empty and stays
            with contextlib.suppress(OSError):
                folder.rmdir()


_HELD: set[Path] = set()  # outputs this process has locked


def main_process_lock(*paths: str | Path) -> contextlib.AbstractContextManager:
    """`output_lock` in the process that writes the outputs (rank 0 of a distributed run); nothing elsewhere."""
    return output_lock(*paths) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext()
