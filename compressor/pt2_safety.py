"""What loading a ``.pt2`` archive would make torch run, checked before ``torch.export.load`` sees the file.

``torch.export.load`` unpickles (``weights_only=False``) every weight or constant its payload config marks
``use_pickle``, every ``custom_obj_``/``opaque_obj_`` constant, and any embedded ``.pt`` (sample inputs,
legacy weights) that the safe unpickler rejects; ``program.module()`` then ``exec``s the program's
``guards_code``, ``sympy.sympify`` evaluates its shape expressions, and graph targets resolve to any
attribute of ``torch``. An AOTInductor package holds a shared library. Each of these can run code from
the file, so `check_pt2` refuses an archive holding any of them unless the caller trusts it.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from .errors import CompressorError

# graph call targets a legitimate export serialises: ATen/custom ops, Python operators, math, symbolic helpers
SAFE_TARGET_PREFIXES = ("torch.ops.", "_operator.", "math.", "torch.sym_", "torch._sym_", "#")
NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd", ".cubin", ".fatbin")
PICKLED_PREFIXES = ("custom_obj_", "opaque_obj_")
MAX_EXPANSION = 200  # a compressed entry may inflate at most this much (torch stores entries uncompressed)
MAX_JSON_BYTES = 512 * 1024**2

# names a shape expression or guard may use: sympy/torch symbolic functions, the input accessor L, symbols
_SAFE_NAMES = frozenset("""
L True False None Symbol Integer Float Rational Eq Ne Lt Le Gt Ge StrictLessThan StrictGreaterThan LessThan
GreaterThan Unequality Equality And Or Not Mod Max Min Abs floor ceiling Piecewise sqrt oo zoo nan Mul Add Pow
FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv IntTrueDiv FloatTrueDiv LShift RShift
IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat FloatPow PowByNatural
Identity cast_symbool_to_symint_guardless math torch abs int float round min max pow len
""".split())
_SAFE_ATTRS = frozenset("size stride storage_offset shape numel dim floor ceil trunc sqrt log2 inf".split())
_SYMBOL = re.compile(r"^[a-z]{1,8}[0-9]+$")  # s0, s77, u3, zuf0 ...
_SAFE_NODES = (ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.keyword, ast.Constant,
               ast.Name, ast.Subscript, ast.Attribute, ast.Tuple, ast.List, ast.Slice, ast.IfExp, ast.operator,
               ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context)
_BUILTINS = frozenset(dir(builtins))


def safe_expression(text: str) -> bool:
    """Whether `text` is a plain arithmetic/comparison expression over symbols and sizes (no code)."""
    if not isinstance(text, str) or len(text) > 100_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _SAFE_NODES):
            return False
        if isinstance(node, ast.Name) and not (node.id in _SAFE_NAMES or (_SYMBOL.match(node.id)
                                                                           and node.id not in _BUILTINS)):
            return False
        if isinstance(node, ast.Attribute) and not (node.attr in _SAFE_ATTRS or node.attr.startswith("sym_")):
            return False
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
            return False
    return True


def _walk(obj: Any) -> Iterator[tuple[str | None, Any]]:
    """(key, value) of every mapping entry and list item in a JSON tree."""
    stack = [(None, obj)]
    while stack:
        key, value = stack.pop()
        yield key, value
        if isinstance(value, dict):
            stack.extend(value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)


def _program_hazards(name: str, program: Any) -> list[str]:
    """Code a serialised ExportedProgram (models/*.json) would run: guards, shape expressions, call targets."""
    if not isinstance(program, dict):
        return [f"{name} is not a JSON object"]
    found = []
    guards = program.get("guards_code") or []
    bad = [g for g in (guards if isinstance(guards, list) else [guards]) if not safe_expression(g)]
    if bad:
        found.append(f"{name} holds guard code that is not a plain expression ({str(bad[0])[:60]!r})")
    ranges = program.get("range_constraints") or {}
    exprs = list(ranges) if isinstance(ranges, dict) else []
    targets = []
    for key, value in _walk(program):
        if key == "expr_str":
            exprs.append(value)
        elif key == "target" and isinstance(value, str) and not value.startswith(SAFE_TARGET_PREFIXES):
            targets.append(value)
    bad = [e for e in exprs if not safe_expression(e)]
    if bad:
        found.append(f"{name} holds a shape expression that is not plain arithmetic ({str(bad[0])[:60]!r})")
    if targets:
        found.append(f"{name} calls {targets[0]!r}, which is not a torch op")
    return found


def _payload_hazards(name: str, config: Any) -> list[str]:
    """Weights or constants a payload config marks pickled (torch unpickles them with weights_only=False)."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        return [f"{name} is not a payload config"]
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            return [f"{name} has a malformed entry for {fqn!r}"]
        path_name = str(meta.get("path_name", ""))
        if meta.get("use_pickle") or path_name.startswith(PICKLED_PREFIXES):
            return [f"stores {fqn!r} ({path_name}) as a pickle"]
    return []


def _torch_save_hazard(name: str, data: bytes) -> str | None:
    """An embedded torch.save payload that the safe unpickler rejects (torch then retries with full unpickling)."""
    import torch

    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])
        detail = next((ln.strip() for ln in first if "GLOBAL" in ln or "Unsupported" in ln), type(exc).__name__)
        return f"holds {name}, which needs full unpickling ({detail[:100]})"
    return None


def pt2_hazards(path: str | Path) -> list[str]:
    """Why loading the archive at `path` could run code from it (empty: nothing found); raises on a non-archive."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CompressorError(f"cannot read {path} as a torch.export program: it is not a .pt2 archive "
                              f"({type(exc).__name__})") from None
    found: list[str] = []
    with archive:
        infos = archive.infolist()
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
                raise CompressorError(f"{path}: entry {info.filename} declares {info.file_size:,} bytes from "
                                      f"{info.compress_size:,} compressed: refusing a zip bomb")
        for info in infos:
            full = info.filename
            rel = full.split("/", 1)[1] if "/" in full else full  # drop the archive's root folder
            base = rel.rsplit("/", 1)[-1]
            if rel.startswith("data/aotinductor/") or base.endswith(NATIVE_SUFFIXES):
                found.append(f"holds compiled native code ({rel}), which loading would execute")
            elif base.endswith(".pkl") or base.startswith(PICKLED_PREFIXES):
                found.append(f"holds a pickled object ({rel})")
            elif base.endswith(".pt"):
                hazard = _torch_save_hazard(rel, archive.read(full))
                if hazard:
                    found.append(hazard)
            elif base.endswith(".json") and (rel.startswith(("data/weights/", "data/constants/", "models/"))
                                            or base == "serialized_exported_program.json"):
                if info.file_size > MAX_JSON_BYTES:
                    raise CompressorError(f"{path}: {rel} declares {info.file_size:,} bytes of JSON: refusing it")
                try:
                    doc = json.loads(archive.read(full))
                except (ValueError, UnicodeDecodeError, RecursionError):
                    raise CompressorError(f"cannot read {path} as a torch.export program: {rel} is not valid "
                                          "JSON") from None
                if rel.startswith("models/") or base == "serialized_exported_program.json":
                    found += _program_hazards(rel, doc)
                elif base.endswith("_config.json"):
                    found += _payload_hazards(rel, doc)
    return found


def check_pt2(path: str | Path, trust_pickle: bool = False) -> None:
    """Refuse, with one line, a ``.pt2`` whose loading could run code from the file, unless `trust_pickle`."""
    found = pt2_hazards(path)
    if found and not trust_pickle:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise CompressorError(f"{path} {found[0]}{more}; loading it could run arbitrary code, so it is refused: "
                              "re-export it with torch.export.save from plain tensors, or pass `trust_pickle` only "
                              "if you trust its source")
