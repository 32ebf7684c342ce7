""".pt2 files load only when the caller trusts them (`trust_program`), like pickles.

Loading a ``torch.export`` program unpickles what its configs mark pickled, retries embedded ``.pt`` payloads with
full unpickling, evaluates shape expressions with ``sympy.sympify`` and ``exec``s guard code; an AOTInductor
package is a shared library whose constructors run on load. Scanning an archive for those routes has missed
new ones each time it was audited, so no archive content is trusted: only the zip's member names are read
here (to tell the two kinds apart and name a non-archive), never a member's contents.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import CompressorError

AOTI_DIR = "/data/aotinductor/"  # the folder of an AOTInductor package that holds its compiled code


def _member_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CompressorError(f"cannot read {path} as a .pt2 file: it is not a .pt2 archive "
                              f"({type(exc).__name__})") from None


def is_aoti_package(path: str | Path) -> bool:
    """Whether `path` is an AOTInductor package (a .pt2 zip holding compiled code), not a torch.export program."""
    try:
        return any(AOTI_DIR in n for n in _member_names(Path(path)))
    except CompressorError:
        return False


def check_program_trusted(path: str | Path, trust_program: bool) -> None:
    """Refuse, in one line, to load the torch.export program at `path` unless `trust_program` (or an AOTI package)."""
    path = Path(path)
    if any(AOTI_DIR in n for n in _member_names(path)):
        raise CompressorError(f"{path} is an AOTInductor package (compiled code), not a torch.export program: bench "
                              "it as an engine of the model it was exported from (MODEL=ENGINE)")
    if not trust_program:
        raise CompressorError(f"{path} is a .pt2 program, and loading one can run code from the file: pass "
                              "`trust_program` only if you trust its source")


def check_native_trusted(path: str | Path, trust_program: bool) -> None:
    """Refuse, in one line, to load the AOTInductor package at `path` (its shared library runs) unless trusted."""
    if not trust_program:
        raise CompressorError(f"{path} is an AOTInductor package, and loading one runs the native code it holds: "
                              "pass `trust_program` only if you trust its source")
