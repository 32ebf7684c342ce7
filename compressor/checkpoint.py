"""One safe checkpoint format (loaded with ``torch.load(weights_only=True)``) plus the formats users bring."""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import logging
import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import CompressorError
from .filekind import DESCRIPTIONS, check_regular_file, describe, file_kind
from .folding import unwrap_model
from .io import atomic_write, check_output
from .metadata import check_checkpoint
from .models import build_imported, create_model, is_import_path, normalization_of, user_name
from .models.exported import ExportedModel
from .pt2_trust import check_program_trusted
from .registry import TRANSFORMS
from .sanity import check_declared_size
from .storage import read_compressed

log = logging.getLogger(__name__)

FORMAT = "compressor.checkpoint"
FORMAT_VERSION = 1
PICKLED_ARCH = "pickle"  # a checkpoint whose architecture is a pickled nn.Module (reloads only with --trust-pickle)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a result."""
    import numpy

    versions = {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(numpy.__version__)}
    for mod in ("torchvision", "compressor"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # not installed as a distribution
            pass
    return versions


def make_provenance(seed: int | None = None, metrics: Mapping[str, Any] | None = None, *, command: str | None = None,
                    **extra: Any) -> dict:
    """The command that made it (as its caller states it: the CLI passes its command line; None from Python),
    library versions, seed, metrics and time, for the record."""
    return {
        "command": command,
        "versions": library_versions(),
        "seed": seed,
        "metrics": dict(metrics or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


@dataclass
class Checkpoint:
    """A model's architecture, weights and everything later stages need to know about it."""

    arch: str
    arch_kwargs: dict
    state_dict: dict
    dataset: dict = field(default_factory=dict)
    compression: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    module: nn.Module | None = None  # the pickled module of a PICKLED_ARCH checkpoint (it holds the weights)

    @property
    def num_classes(self) -> int:
        return int(self.arch_kwargs.get("num_classes", self.dataset.get("num_classes", 0)))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.get("input_shape", ()))

    def to_dict(self) -> dict:
        """The dict that is saved: plain containers and tensors only."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "classes": list(self.dataset.get("classes", [])),
            "input_shape": list(self.input_shape),
            "normalization": {"mean": list(self.arch_kwargs.get("mean", [])),
                              "std": list(self.arch_kwargs.get("std", []))},
            "dataset": self.dataset,
            "state_dict": self.state_dict,
            "compression": self.compression,
            "provenance": self.provenance,
            **({"module": self.module} if self.module is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "checkpoint") -> "Checkpoint":
        """Validate and read a saved dict."""
        version = d.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CompressorError(f"{source} has checkpoint format version {version!r}, this compressor reads "
                                  f"up to {FORMAT_VERSION}: upgrade compressor")
        check_checkpoint(d, source)  # every field's type and range, before anything reads one
        return cls(arch=d["arch"], arch_kwargs=dict(d["arch_kwargs"]), state_dict=d["state_dict"],
                   dataset=dict(d.get("dataset") or {}), compression=list(d.get("compression") or []),
                   provenance=dict(d.get("provenance") or {}),
                   module=d.get("module") if isinstance(d.get("module"), nn.Module) else None)

    def build_model(self, arch: str | None = None, trust_code: bool = False) -> nn.Module:
        """Rebuild the architecture (structural compression included) and load the weights strictly.

        A recorded import path is only imported when `arch` repeats it (the user typed it) or `trust_code`.
        """
        if self.arch == PICKLED_ARCH:
            if self.module is None:
                raise CompressorError("the checkpoint's architecture is a pickled module but it holds none: it is "
                                      "incomplete; save it again")
            return self.module.eval()
        check_arch_allowed(self.arch, arch, trust_code)
        check_declared_size(lambda: build_architecture(self.arch, self.arch_kwargs), self.state_dict,
                            f"the checkpoint (arch '{self.arch}')")
        model = build_architecture(self.arch, self.arch_kwargs)
        apply_structure(model, self.compression)
        fit_state_dict(model, self.state_dict, what=f"arch '{self.arch}'")
        return model


def check_arch_allowed(recorded: str, given: str | None, trust_code: bool) -> None:
    """A file never makes the tool import code: a recorded import path needs the same --arch or --trust-code."""
    if given is not None and given != recorded:
        raise CompressorError(f"the checkpoint was written for `arch` {recorded}, not {given}: pass `arch` {recorded}"
                              " (or leave `arch` out for a zoo model)")
    if is_import_path(recorded) and given is None and not trust_code:
        raise CompressorError(f"the checkpoint's architecture is the import path {recorded}, and a file never makes "
                              f"compressor import code by itself: pass `arch` {recorded} (or `trust_code`)")


def build_architecture(arch: str, arch_kwargs: Mapping[str, Any]) -> nn.Module:
    """The model a checkpoint records: a zoo name with its keyword arguments, or an import path whose
    arch_kwargs are ``{"kwargs": ..., "mean": ..., "std": ...}`` (the callable's arguments and our normalisation)."""
    if is_import_path(arch):
        return build_imported(arch, arch_kwargs.get("kwargs"), arch_kwargs.get("mean"), arch_kwargs.get("std"))
    return create_model(arch, **arch_kwargs)


def apply_structure(model: nn.Module, compression: list) -> None:
    """Re-apply recorded structural transforms (those marked ``structural``) so shapes match the weights."""
    for entry in compression:
        if entry.get("structural"):
            TRANSFORMS.get(entry["name"]).rebuild(model, entry)


def save_checkpoint(path: str | Path, model: nn.Module, *, arch: str, arch_kwargs: Mapping[str, Any],
                    dataset: Mapping[str, Any] | None = None, compression: list | None = None,
                    provenance: Mapping[str, Any] | None = None, force: bool = False) -> Checkpoint:
    """Save `model` atomically; an existing `path` is kept unless `force`."""
    path = check_output(path, force)
    module = None
    if arch == PICKLED_ARCH:  # no importable architecture: the module itself is saved (loading needs --trust-pickle)
        module, sd = copy.deepcopy(unwrap_model(model)).cpu().eval(), {}
    else:
        sd = {k: v.detach().cpu().contiguous() for k, v in unwrap_model(model).state_dict().items()}
    ckpt = Checkpoint(arch=arch, arch_kwargs=_plain(dict(arch_kwargs)), state_dict=sd, dataset=_plain(dict(dataset or {})),
                      compression=_plain(list(compression or [])), provenance=_plain(dict(provenance or {})),
                      module=module)
    atomic_write(path, lambda tmp: torch.save(ckpt.to_dict(), tmp))
    return ckpt


def _plain(obj: Any) -> Any:
    """Convert tuples and numpy scalars to what ``weights_only`` loading accepts."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)  # str subclasses such as torch's TorchVersion are not allowed by weights_only
    if isinstance(obj, (int, float, bool, type(None), torch.Tensor)):
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


@dataclass
class LoadedModel:
    """A model ready to run, with its checkpoint metadata when the file had any."""

    model: nn.Module
    checkpoint: Checkpoint | None
    source: str  # "checkpoint", "state_dict", "exported" or "pickle"
    path: Path
    normalization: dict | None = None  # {"mean", "std", "source"}: the input normalisation actually applied

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) the model takes, when the file says: recorded in a checkpoint, or an exported program's."""
        if self.checkpoint is not None and self.checkpoint.input_shape:
            return self.checkpoint.input_shape
        return tuple(getattr(self.model, "input_shape", ()) or ())


def _read(path: Path, trust_pickle: bool) -> Any:
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):  # zip, or a pickle
        raise CompressorError(f"{path} is not a PyTorch file (neither a torch.save archive nor a pickle): give a "
                              "checkpoint (.pt), a .pt2 program or a .safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            reason = str(exc).strip().splitlines()
            detail = next((ln.strip() for ln in reason if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise CompressorError(
                f"{path} contains pickled Python objects{f' ({detail})' if detail else ''}; unpickling can run "
                "arbitrary code, so it is refused: re-save it as a state dict, or pass `trust_pickle` only if you "
                "trust its source") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CompressorError(f"cannot read {path}: the file ({describe(path)}) is corrupt or truncated "
                              f"({_short(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CompressorError(f"cannot read {path} even with `trust_pickle`: {_short(exc)}") from None


def _check_kind(path: Path) -> None:
    """Refuse, saying what it is, a file that no loader of its name can read: TorchScript, a renamed .pt/.pt2."""
    kind = file_kind(path)
    if kind == "torchscript":
        raise CompressorError(f"{path} is {DESCRIPTIONS[kind]}, whose code compressor never runs: load it in PyTorch "
                              "and save its state_dict() (then pass `arch`), or export the model with torch.export "
                              "(.pt2)")
    if kind == "pt2" and path.suffix != ".pt2":
        raise CompressorError(f"{path} is {DESCRIPTIONS[kind]} named {path.suffix or 'without a suffix'}: rename it "
                              f"to {path.with_suffix('.pt2').name}")
    if kind in ("torch-save", "pickle") and path.suffix == ".pt2":
        raise CompressorError(f"{path} is {DESCRIPTIONS[kind]}, not a torch.export program: rename it to "
                              f"{path.with_suffix('.pt').name}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


# where users' files keep the weights: {'state_dict': ...}, {'model': ...}, ... (searched in this order)
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "weights", "ema")
# prefixes of whole-model wrappers: DataParallel/DDP, torch.compile, Lightning/HF-style attribute names
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


def _find_state_dict(obj: Any, path: Path | None = None) -> dict | None:
    """The state dict inside what a user saved: bare, under a container key, or beside extra entries.

    Of several under container keys (e.g. 'model' and 'ema'), the first in `_CONTAINER_KEYS` order is used, and
    a note names it."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    found = {key: sd for key in _CONTAINER_KEYS if (sd := _find_state_dict(obj.get(key))) is not None}
    if found:
        first = next(iter(found))
        if path is not None and len(found) > 1:
            log.warning(f"note: {path} holds {len(found)} state dicts ({', '.join(found)}): using '{first}'; save "
                        "another alone (torch.save(obj[KEY], FILE)) to use it")
        return found[first]
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return tensors if tensors and 2 * len(tensors) >= len(obj) else None  # weights beside e.g. 'epoch', 'acc'


def _find_module(obj: Any) -> nn.Module | None:
    """A pickled module, saved bare or under a container key."""
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping):
        return next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), nn.Module)), None)
    return None


def _is_norm_key(key: str) -> bool:
    return key.split(".")[-2:-1] == ["normalize"]


def _layouts(sd: dict, own: Mapping[str, torch.Tensor]) -> list[dict]:
    """The file's keys as saved and with wrapper prefixes removed, also placed under a `Normalized` wrapper."""
    out, cur = [sd], sd
    while cur:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in cur)), None)
        if prefix is None:
            break
        cur = {k[len(prefix):]: v for k, v in cur.items()}
        out.append(cur)
    inner = [k for k in own if not _is_norm_key(k)]
    if inner and all(k.startswith("model.") for k in inner):
        out += [{"model." + k: v for k, v in c.items()} for c in list(out)]
    return out


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _filled_by_torch(model: nn.Module) -> set[str]:
    """Buffers PyTorch's own `load_state_dict` fills when a file lacks them: BatchNorm's ``num_batches_tracked``
    (added in PyTorch 0.4.1; older files, e.g. the akamaster CIFAR ResNets, have none and load with 0)."""
    return {f"{name}.num_batches_tracked" if name else "num_batches_tracked"
            for name, m in model.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats}


def fit_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> list[str]:
    """Load `state_dict` strictly, accepting wrapper prefixes (``module.``, ...), missing normalisation buffers and
    the buffers PyTorch itself fills (`_filled_by_torch`); mismatches are named as the user's model spells them;
    returns the normalisation buffers the file did not hold (they keep the model's values)."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    own = model.state_dict()
    adapt = getattr(model, "adapt_state_dict", None)  # a zoo model that reads its upstream project's layout
    candidates = [adapt(c) if adapt is not None else c for c in _layouts(sd, own)]

    def fit(c: dict) -> int:
        return sum(1 for k, v in own.items() if k in c and c[k].shape == v.shape) - sum(1 for k in c if k not in own)

    sd = max(candidates, key=fit)
    norm_keys = [k for k in own if _is_norm_key(k) and k not in sd]
    filled = _filled_by_torch(model)
    missing = [k for k in own if k not in sd and k not in norm_keys and k not in filled]
    unexpected = [k for k in sd if k not in own]
    name = functools.partial(user_name, model)
    shapes = [f"{name(k)}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and sd[k].shape != own[k].shape]
    missing, unexpected = [name(k) for k in missing], [name(k) for k in unexpected]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_first(shapes, 2)})")
        raise CompressorError(f"the weights do not fit {what}: {'; '.join(parts)}: check `arch`, `arch_kwargs` and "
                              "`num_classes`")
    for k in [*norm_keys, *(k for k in filled if k not in sd)]:
        sd[k] = own[k]
    model.load_state_dict(sd, strict=True)
    return norm_keys


def _normalization(model: nn.Module, source: str, none: str) -> dict:
    """{"mean", "std", "source"} of the model's first Normalize (`source`), or None values and `none`."""
    found = normalization_of(model)
    if found is None and hasattr(model, "normalization"):  # an exported program's buffers
        found = model.normalization()
    return {**found, "source": source} if found is not None else {"mean": None, "std": None, "source": none}


def _check_stated(norm: dict, mean: Any, std: Any, no_normalize: bool, path: Path) -> None:
    """The file's own normalisation must agree with --mean/--std or --no-normalize when those are given too."""
    if mean is None and not no_normalize:
        return
    want_mean = list(mean) if mean is not None else [0.0] * len(norm["mean"])
    want_std = list(std) if std is not None else [1.0] * len(norm["std"])
    same = len(want_mean) == len(norm["mean"]) and all(
        abs(a - b) < 1e-5 for a, b in zip(want_mean + want_std, norm["mean"] + norm["std"]))
    if not same:
        raise CompressorError(f"{path} holds its own input normalisation (mean {norm['mean']}, std {norm['std']}), "
                              f"which {'`no_normalize`' if no_normalize else '`mean`/`std`'} contradicts: drop "
                              f"{'`no_normalize`' if no_normalize else '`mean`/`std`'}")


def check_recorded_options(loaded: LoadedModel, *, arch_kwargs: Mapping[str, Any] | None = None,
                           num_classes: int | None = None, mean: Any = None, std: Any = None,
                           no_normalize: bool = False) -> None:
    """Options for building a model that a file records itself are refused when they differ from the record
    (never silently ignored); a state dict is built from them, so they always apply there."""
    if loaded.source == "state_dict":
        return
    path, ck = loaded.path, loaded.checkpoint
    if loaded.source == "checkpoint" and ck is not None:
        recorded = dict(ck.arch_kwargs.get("kwargs") or {}) if is_import_path(ck.arch) else ck.arch_kwargs
        differ = {k: v for k, v in (arch_kwargs or {}).items() if k not in recorded or _plain(v) != recorded[k]}
        if differ:
            raise CompressorError(f"{path} records `arch_kwargs` {recorded}, which {differ} contradicts: drop "
                                  "`arch_kwargs` (the checkpoint's own are used)")
        if num_classes is not None and ck.num_classes and num_classes != ck.num_classes:
            raise CompressorError(f"{path} records {ck.num_classes} classes: drop `num_classes` {num_classes}")
    elif arch_kwargs or num_classes is not None:
        raise CompressorError(f"{path} is a whole model ({loaded.source}), built as saved: drop `arch_kwargs` and "
                              "`num_classes` (they build the architecture of a plain state dict)")
    if mean is None and std is None and not no_normalize:
        return
    norm = loaded.normalization or {}
    if norm.get("mean") is None:
        raise CompressorError(f"{path} applies its own input handling, which `mean`/`std` and `no_normalize` cannot "
                              "change: drop them (they describe a plain state dict)")
    if (mean is None) != (std is None) and not no_normalize:
        raise CompressorError("pass `mean` and `std` together (or `no_normalize`)")
    _check_stated(norm, mean, std, no_normalize, path)


def _from_state_dict(path: Path, sd: dict, arch: str, arch_kwargs: Mapping[str, Any] | None, mean: Any, std: Any,
                     no_normalize: bool) -> LoadedModel:
    """Build `arch` for a plain state dict and load it; refuse a normalisation nobody stated."""
    kwargs = dict(arch_kwargs or {})
    imported = is_import_path(arch)
    if not imported:  # a zoo model's mean/std in the API's kwargs are stated normalisation too
        mean = kwargs.pop("mean", None) if mean is None else mean
        std = kwargs.pop("std", None) if std is None else std
        kwargs.pop("mean", None), kwargs.pop("std", None)
    if (mean is None) != (std is None):
        raise CompressorError("pass `mean` and `std` together (or `no_normalize`)")
    if no_normalize and mean is not None:
        raise CompressorError("`no_normalize` contradicts `mean`/`std`: pass one or the other")
    if imported:
        model = build_imported(arch, kwargs, mean, std)
    else:
        chans = int(kwargs.get("in_chans", 3))
        model = create_model(arch, mean=[0.0] * chans if no_normalize else mean,
                             std=[1.0] * chans if no_normalize else std, **kwargs)
    filled = fit_state_dict(model, sd, what=f"`arch` {arch}")
    stated = mean is not None or no_normalize or (imported and ("mean" in kwargs or "std" in kwargs))
    if filled and not stated:
        raise CompressorError(f"{path} holds no input normalisation, and `arch` {arch} would put one in front of "
                              "the weights: pass the mean and std they were trained with (`mean` M1,M2,.. `std` "
                              "S1,S2,..), or `no_normalize` if they take raw [0, 1] pixels")
    source = ("--no-normalize" if no_normalize else "--mean/--std" if mean is not None else "--arch-kwargs") \
        if filled else "the file"
    norm = _normalization(model, source, "none: the model's own code gets [0, 1] pixels")
    if not filled and norm["mean"] is not None:
        _check_stated(norm, mean, std, no_normalize, path)
    if imported:
        record = {"kwargs": kwargs, **({"mean": list(mean), "std": list(std)} if mean is not None else {})}
    else:
        record = {**kwargs, **({k: norm[k] for k in ("mean", "std")} if norm["mean"] is not None else {})}
    ckpt = Checkpoint(arch=arch, arch_kwargs=_plain(record), state_dict=model.state_dict())
    return LoadedModel(model, ckpt, "state_dict", path, norm)


def load_compressed(path: str | Path, *, arch: str | None = None, trust_code: bool = False) -> LoadedModel:
    """Rebuild the model (and its Checkpoint) from a compressed file; a recorded import path needs `arch` or
    `trust_code`, as for a ``.pt`` checkpoint."""
    state, ck = read_compressed(path)
    if not ck:
        raise CompressorError(f"{path} holds no checkpoint metadata (architecture): it cannot be rebuilt")
    return _checkpoint_model(Checkpoint.from_dict({**ck, "state_dict": state}, str(path)), path, arch, trust_code)


def _checkpoint_model(ckpt: Checkpoint, path: str | Path, arch: str | None, trust_code: bool) -> LoadedModel:
    model = ckpt.build_model(arch, trust_code)
    return LoadedModel(model, ckpt, "checkpoint", Path(path),
                       _normalization(model, "recorded in the checkpoint", "none: the model's own code"))


def load_model(path: str | Path, *, arch: str | None = None, arch_kwargs: Mapping[str, Any] | None = None,
               trust_pickle: bool = False, trust_code: bool = False, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, no_normalize: bool = False,
               trust_program: bool = False) -> LoadedModel:
    """Load a compressor checkpoint (``.pt``, or compressed ``.safetensors``), a plain state dict (needs `arch`: a
    zoo name, ``tv:``/``timm:`` name or ``module:callable`` import path), a ``.pt2`` export or a trusted pickle.

    A state dict gets the normalisation it holds, or `mean`/`std` (for a zoo model also given in `arch_kwargs`), or
    none with `no_normalize`; one that would otherwise be invented is refused. A checkpoint that records an import
    path is only loaded when `arch` repeats it or `trust_code`. A ``.pt2`` program can run code from the file when
    loaded, so it loads only with `trust_program`. ``LoadedModel.normalization`` says what is applied.
    """
    path = check_regular_file(path, "checkpoint")
    _check_kind(path)
    if path.suffix == ".safetensors":  # a compressed checkpoint (`compressor export --format sparse-safetensors`)
        return load_compressed(path, arch=arch, trust_code=trust_code)
    if path.suffix == ".pt2":
        check_program_trusted(path, trust_program)  # before torch sees it: its loader unpickles and evals the file
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise CompressorError(f"cannot read {path} as a torch.export program: {_short(exc)}") from None
        try:
            model = ExportedModel(program)
        except Exception as exc:
            raise CompressorError(f"cannot run {path} as a model (a program with one image-batch input is "
                                  f"expected): {_short(exc)}") from None
        return LoadedModel(model, None, "exported", path,
                           _normalization(model, "inside the program", "not visible: the program's own graph"))
    obj = _read(path, trust_pickle)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        return _checkpoint_model(Checkpoint.from_dict(dict(obj), str(path)), path, arch, trust_code)
    module = _find_module(obj)
    if module is not None:
        return LoadedModel(module.eval(), None, "pickle", path,
                           _normalization(module, "inside the module", "not visible: the module's own code"))
    sd = _find_state_dict(obj, path)
    if sd is None:
        raise CompressorError(f"{path} holds neither a compressor checkpoint nor a state dict: "
                              "save the model's state_dict(), or export it with torch.export (.pt2)")
    if arch is None:
        raise CompressorError(f"{path} is a plain state dict: pass `arch` NAME (see `compressor list models`) or "
                              "`arch` PACKAGE.MODULE:CALLABLE (your own model) so the architecture can be built")
    return _from_state_dict(path, sd, arch, arch_kwargs, mean, std, no_normalize)
