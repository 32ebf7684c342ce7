"""Open any deployable file as a runner ``x -> logits``: the registered exporter that claims its name opens it (ONNX
in ONNX Runtime, TensorRT engines, AOTInductor packages, or a plugin's format); a PyTorch model runs eager."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import CompressorError
from compressor.registry import EXPORTERS

from .base import Exporter
from .runners import Runner


def engine_exporters() -> list[type[Exporter]]:
    """The registered exporters whose files `bench` runs (those with their own `open_runner`), by name."""
    return [e.obj for e in EXPORTERS.entries()
            if isinstance(e.obj, type) and issubclass(e.obj, Exporter) and e.obj.runs_engines()]


def or_list(items: list[str]) -> str:
    """``a, b or c``."""
    return f"{', '.join(items[:-1])} or {items[-1]}" if len(items) > 1 else "".join(items)


def engine_suffixes() -> list[str]:
    """The usual file ending of each kind of engine `bench` runs (each exporter's first suffix), in registry order."""
    return list(dict.fromkeys(e.suffixes[0] for e in engine_exporters() if e.suffixes))


def written_suffixes() -> list[str]:
    """The usual file ending of every registered exporter, in registry order."""
    return list(dict.fromkeys(e.obj.suffixes[0] for e in EXPORTERS.entries() if getattr(e.obj, "suffixes", None)))


def engine_exporter(path: str | Path) -> type[Exporter]:
    """The exporter whose runner opens the engine file at `path`, from its name (and the exporter's own check)."""
    path = Path(path)
    exporters = engine_exporters()
    for exporter in exporters:
        if exporter.opens(path):
            return exporter
    kinds = [f"{'/'.join(e.suffixes)} ({e.name})" for e in exporters]
    raise CompressorError(f"cannot tell the engine format of {path}: use {or_list(kinds)}")


def engine_format(path: str | Path) -> str:
    """The format of an engine file (its exporter's name), from its name and contents: onnx, tensorrt, aoti, ..."""
    return engine_exporter(path).name


def open_runner(path: str | Path, *, device: str = "cpu", threads: int | None = None,
                trust_program: bool = False) -> Runner:
    """A runner for the engine file at `path` (one session: close it before opening the next); an AOTInductor
    package runs native code from the file, so it opens only with `trust_program`."""
    path = Path(path)
    if not path.is_file():
        raise CompressorError(f"engine {path} does not exist: check the path")
    return engine_exporter(path).open_runner(path, device=device, threads=threads, trust_program=trust_program)
