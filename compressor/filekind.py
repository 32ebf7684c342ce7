"""What a file is, read from its first bytes and (for a zip) its member names, so that messages can say it."""

from __future__ import annotations

import json
import stat
import struct
import zipfile
from pathlib import Path

from .errors import CompressorError

# kinds `file_kind` returns (a short name) and how messages describe them
DESCRIPTIONS = {
    "torch-save": "a torch.save archive",
    "pt2": "a torch.export program (.pt2 archive)",
    "torchscript": "a TorchScript archive (torch.jit.save: it holds code/ and constants.pkl)",
    "npz": "a NumPy .npz archive",
    "zip": "a zip archive",
    "pickle": "a pickle",
    "safetensors": "a safetensors file",
    "empty": "an empty file",
    "fifo": "a FIFO (named pipe), not a regular file",
    "socket": "a socket, not a regular file",
    "device": "a device, not a regular file",
    "directory": "a directory",
    "unknown": "of no kind compressor reads",
}


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "unknown"
    inner = {n.split("/", 1)[1] if "/" in n else n for n in names}  # torch archives put all under one folder
    tops = {n.split("/", 1)[0] for n in inner}
    if "constants.pkl" in inner and "code" in tops:
        return "torchscript"
    if "archive_format" in inner or ("models" in tops and "data" in tops and "data.pkl" not in inner):
        return "pt2"
    if "data.pkl" in inner:
        return "torch-save"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def file_kind(path: str | Path) -> str:
    """The kind of the file at `path` (a key of `DESCRIPTIONS`), from what it holds, not its name."""
    path = Path(path)
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if not stat.S_ISREG(mode):
        return "device"
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "empty"
    if head[:2] == b"PK":
        return _zip_kind(path)
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) > 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        try:  # a safetensors header: 8 bytes of length, then that much JSON
            json.loads(head[8:8 + n].decode()) if n <= len(head) - 8 else None
            return "safetensors"
        except (UnicodeDecodeError, ValueError):
            pass
    return "unknown"


def describe(path: str | Path) -> str:
    """`file_kind` in words, e.g. 'a TorchScript archive (...)'."""
    return DESCRIPTIONS[file_kind(path)]


def check_regular_file(path: str | Path, what: str = "input") -> Path:
    """Fail with one line, saying what it is, unless `path` is a regular file (a FIFO would block, a folder fail)."""
    path = Path(path)
    if not path.exists():
        raise CompressorError(f"{what} {path} does not exist: check the path")
    kind = file_kind(path)
    if kind == "directory":
        raise CompressorError(f"{what} {path} is a directory: give the path of a file")
    if kind in ("fifo", "socket", "device"):
        raise CompressorError(f"{what} {path} is {DESCRIPTIONS[kind]}: give the path of a file")
    return path
