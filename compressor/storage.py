"""Compressed storage for pruned checkpoints: safetensors with sparse tensors as nonzero values + a packed bitmask.

A tensor is stored sparse when that is smaller than dense: ``<name>::values`` (the nonzero entries in
row-major order, same dtype) and ``<name>::bitmask`` (uint8, one bit per entry, ``numpy.packbits`` order);
every other tensor is stored as it is. The round trip is exact in value: NaNs are kept as entries, and a
negative zero (what a folded mask leaves where the weight was negative) reads back as +0.0, which compares
equal to it. The safetensors metadata holds the format, the sparse tensors' shapes and dtypes,
and the checkpoint's metadata (architecture, dataset, compression, provenance) as JSON. Reading it never
unpickles anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from .errors import CompressorError, error_line
from .folding import prepare_model
from .io import atomic_write, check_output
from .reporting import jsonable


class _Recorded(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


FORMAT = "compressor.sparse-safetensors"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
_SEP = "::"


def _nonzero(t: torch.Tensor) -> torch.Tensor:
    """Where the entry is not zero (+0.0 or -0.0); NaN counts as nonzero (bool, flat)."""
    flat = t.detach().reshape(-1)
    return (flat != 0) | flat.isnan() if flat.is_floating_point() else flat != 0


def _sparse_pays(t: torch.Tensor, nnz: int) -> bool:
    return nnz * t.element_size() + (t.numel() + 7) // 8 < t.numel() * t.element_size()


def pack_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors to write, sparse index): sparse tensors split into values + bitmask, the rest dense."""
    tensors: dict[str, torch.Tensor] = {}
    sparse: dict[str, Any] = {}
    for name, t in state_dict.items():
        if _SEP in name:
            raise CompressorError(f"state-dict key '{name}' contains '{_SEP}', which this format reserves")
        t = t.detach().cpu().contiguous()
        if t.numel() == 0 or t.dtype == torch.bool:
            tensors[name] = t
            continue
        keep = _nonzero(t)
        nnz = int(keep.sum())
        if not _sparse_pays(t, nnz):
            tensors[name] = t
            continue
        bits = np.packbits(keep.numpy())
        tensors[f"{name}{_SEP}values"] = t.reshape(-1)[keep].clone()
        tensors[f"{name}{_SEP}bitmask"] = torch.from_numpy(bits)
        sparse[name] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "nnz": nnz}
    return tensors, sparse


def unpack_state_dict(tensors: Mapping[str, torch.Tensor], sparse: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The inverse of `pack_state_dict` (exact)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if _SEP not in name:
            out[name] = t
    if not isinstance(sparse, Mapping):
        raise CompressorError("the sparse-tensor index is not a JSON object: the file is corrupt")
    for name, info in sparse.items():
        try:
            values, bits = tensors[f"{name}{_SEP}values"], tensors[f"{name}{_SEP}bitmask"]
        except KeyError as exc:
            raise CompressorError(f"sparse tensor '{name}' lacks its {exc.args[0]}: the file is corrupt") from None
        shape = _declared_shape(name, info, values, bits)
        numel = math.prod(shape)
        keep = torch.from_numpy(np.unpackbits(bits.numpy(), count=numel).astype(bool))
        if int(keep.sum()) != values.numel():
            raise CompressorError(f"sparse tensor '{name}' has {values.numel()} values for {int(keep.sum())} set bits: "
                                  "the file is corrupt")
        dense = torch.zeros(numel, dtype=values.dtype)
        dense[keep] = values
        out[name] = dense.reshape(shape)
    return out


def _declared_shape(name: str, info: Any, values: torch.Tensor, bits: torch.Tensor) -> tuple[int, ...]:
    """A sparse tensor's shape from the metadata, checked against the bitmask actually stored (before allocating)."""
    shape = info.get("shape") if isinstance(info, Mapping) else None
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise CompressorError(f"sparse tensor '{name}' has no valid shape in the metadata ({shape!r}): the file is "
                              "corrupt")
    numel = math.prod(shape)
    if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != (numel + 7) // 8:
        raise CompressorError(f"sparse tensor '{name}' declares shape {tuple(shape)} ({numel:,} entries) but stores a "
                              f"{bits.numel():,}-byte bitmask: the file is corrupt")
    if values.dim() != 1 or values.numel() > numel:
        raise CompressorError(f"sparse tensor '{name}' stores {values.numel():,} values for {numel:,} entries: the "
                              "file is corrupt")
    return tuple(shape)


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype and values, NaN matching NaN (and -0.0 matching +0.0, as IEEE compares them)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


def _metadata(ckpt: _Recorded | None, sparse: dict[str, Any]) -> dict[str, str]:
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "sparse": json.dumps(sparse)}
    if ckpt is not None:
        d = {k: v for k, v in ckpt.to_dict().items() if k != "state_dict"}
        meta["checkpoint"] = json.dumps(jsonable(d))
    return meta


def encode(state_dict: Mapping[str, torch.Tensor], ckpt: _Recorded | None = None) -> bytes:
    """The compressed file's bytes for `state_dict` (and the checkpoint's metadata)."""
    tensors, sparse = pack_state_dict(state_dict)
    return save(tensors, metadata=_metadata(ckpt, sparse))


def storage_sizes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int | float]:
    """Bytes of `state_dict` as dense safetensors and in this compressed format (computed in memory)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    dense = len(save(sd))
    compressed = len(encode(sd))
    return {"dense_bytes": dense, "compressed_bytes": compressed, "ratio": compressed / dense if dense else 1.0}


def save_compressed(path: str | Path, model: torch.nn.Module, ckpt: _Recorded | None = None, *,
                    force: bool = False) -> Path:
    """Write `model` (masks folded) with its checkpoint metadata to `path` atomically."""
    path = check_output(path, force)
    state = prepare_model(model).state_dict()
    data = encode(state, ckpt)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_compressed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, checkpoint metadata dict without the state dict) of a compressed file; no unpickling."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CompressorError(f"cannot read {path} as safetensors: {error_line(exc, 160)}") from None
    if meta.get("format") != FORMAT:
        raise CompressorError(f"{path} is a safetensors file but not a compressor sparse checkpoint "
                              f"(format {meta.get('format')!r}): load it as a state dict with `arch`")
    version = meta.get("format_version", "")
    if not version.isdigit():
        raise CompressorError(f"{path} has sparse-safetensors format_version {version!r}, not an integer: the file "
                              "is corrupt")
    if int(version) > FORMAT_VERSION:
        raise CompressorError(f"{path} has sparse-safetensors version {version}, this compressor reads "
                              f"up to {FORMAT_VERSION}: upgrade compressor")
    try:
        sparse, ck = json.loads(meta.get("sparse", "{}")), json.loads(meta.get("checkpoint", "{}"))
    except (ValueError, RecursionError):
        raise CompressorError(f"{path} has metadata that is not valid JSON: the file is corrupt") from None
    if not isinstance(ck, dict):
        raise CompressorError(f"{path} has checkpoint metadata that is not a JSON object: the file is corrupt")
    try:
        state = unpack_state_dict(tensors, sparse)
    except CompressorError as exc:
        raise CompressorError(f"{path}: {exc}") from None
    return state, ck
