"""A generic name -> factory registry with typo suggestions, glob listing and entry-point plugins."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterator

from .errors import UnknownNameError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One registered object and its one-line description."""

    name: str
    obj: Any
    description: str
    source: str  # "builtin" or the distribution that provided it


PLUGINS_GROUP = "compressor.plugins"  # entry name: the registry kind a module fills; value: the module to import
_loading_source: str | None = None  # the distribution whose plugin module is being imported
_loaded_plugins: set[str] = set()


def _outside_cwd(entry: str, cwd: str) -> bool:
    """Whether sys.path `entry` is an absolute folder other than the working directory (never '', '.', relative)."""
    return bool(entry) and os.path.isabs(entry) and os.path.realpath(entry) != cwd


def installed_entry_points(group: str) -> list[metadata.EntryPoint]:
    """The `group` entry points of installed distributions: those on absolute sys.path entries other than the
    working directory, so a ``*.dist-info`` folder in the folder a command runs from is never loaded (the first
    distribution of a name wins, as in ``importlib.metadata.entry_points``)."""
    cwd = os.path.realpath(os.getcwd())
    seen: set[str] = set()
    found = []
    for dist in metadata.distributions(path=[p for p in sys.path if _outside_cwd(p, cwd)]):
        # the name importlib.metadata dedupes by, from the folder name (reading each METADATA costs ~0.1 s in all)
        name = getattr(dist, "_normalized_name", None) or str(dist.metadata["Name"]).lower().replace("-", "_")
        if name in seen:
            continue
        seen.add(name)
        found += [ep for ep in dist.entry_points if ep.group == group]
    return found


def _source(ep: metadata.EntryPoint) -> str:
    """"builtin" for this distribution's own entry points, else the distribution that provided `ep`."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.value
    return "builtin" if dist.name == "compressor" else dist.name


def load_plugin_modules(kind: str) -> None:
    """Import the modules that the ``compressor.plugins`` entry points name for registry `kind` (once each).

    The built-in pruners, transforms and exporters arrive this way too, so the core never names the packages
    layered on top of it; a module registers its objects when imported.
    """
    global _loading_source
    for ep in installed_entry_points(PLUGINS_GROUP):
        if ep.name != kind or ep.value in _loaded_plugins:
            continue
        _loaded_plugins.add(ep.value)
        previous, _loading_source = _loading_source, _source(ep)
        try:
            importlib.import_module(ep.value)
        except Exception as exc:  # a broken plugin must not break the toolkit
            if _loading_source == "builtin":
                raise
            log.warning("could not load %s plugin module '%s': %s", kind, ep.value, exc)
        finally:
            _loading_source = previous


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


class Registry:
    """Maps names to objects; built-ins are imported lazily, third-party plugins via entry points."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), group: str | None = None,
                 plugin_kinds: tuple[str, ...] | None = None):
        self.kind = kind
        self._plugin_kinds = plugin_kinds or (kind,)  # the compressor.plugins entry names whose modules fill it
        self.group = group or f"compressor.{kind}"
        self._builtin_modules = builtin_modules
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._resolvers: list[Callable[[str], Any | None]] = []

    def register(self, name: str | None = None, *, description: str | None = None,
                 override: bool = False) -> Callable[[Any], Any]:
        """Decorator: register `obj` under `name` (default: its ``name`` attribute, else its ``__name__``).

        Classes that carry a ``name`` (pruners, transforms, exporters) register with ``@register_x()``: the name is
        stated once, in the class."""

        def deco(obj: Any) -> Any:
            key = name or getattr(obj, "name", None) or obj.__name__
            self.add(key, obj, description=description, override=override)
            return obj

        return deco

    def add(self, name: str, obj: Any, *, description: str | None = None, override: bool = False,
            source: str = "builtin") -> None:
        """Register `obj` under `name`; a second registration of a name is an error unless `override`."""
        if name in self._entries and not override and self._entries[name].obj is not obj:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        desc = description if description is not None else _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, desc, _loading_source or source)

    def add_resolver(self, resolver: Callable[[str], Any | None]) -> None:
        """Add a function that resolves parametric names (e.g. ``tv:resnet50``) not listed by name."""
        self._resolvers.append(resolver)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._builtin_modules:
            importlib.import_module(mod)
        for kind in self._plugin_kinds:
            load_plugin_modules(kind)
        for ep in installed_entry_points(self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the toolkit
                log.warning("could not load %s plugin '%s' (%s): %s", self.kind, ep.name, ep.value, exc)
                continue
            if ep.name not in self._entries:
                self.add(ep.name, obj, source=_source(ep))

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a glob pattern such as ``'pgd*'``."""
        self._ensure_loaded()
        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        """Entries whose names match `pattern` (all when None)."""
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Any:
        """The object registered as `name`; unknown names raise with a 'did you mean' suggestion."""
        self._ensure_loaded()
        if name in self._entries:
            return self._entries[name].obj
        for resolve in self._resolvers:
            obj = resolve(name)
            if obj is not None:
                return obj
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str, suffix: str = "") -> str:
        """One line naming the unknown `name` (+ `suffix`, e.g. steps), a suggestion and where to see the list."""
        close = [c + suffix for c in difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        return f"unknown {self.singular} '{name}{suffix}': {hint}run `compressor list {self.kind}` to see all"

    @property
    def singular(self) -> str:
        return self.kind[:-1] if self.kind.endswith("s") else self.kind


MODELS = Registry("models", ("compressor.models",))
DATASETS = Registry("datasets", ("compressor.data",))
ATTACKS = Registry("attacks", ("compressor.attacks",))
PRUNERS = Registry("pruners")  # built-ins: the `pruners` package, through the compressor.plugins entry points
TRANSFORMS = Registry("transforms")
EXPORTERS = Registry("exporters")
# latency probes (`prune --target-speedup`): name -> probe(reference, candidate, input_shape=, batch_sizes=) giving,
# per batch size, the candidate's measured speedup interval; the built-ins come with the exporters package
RUNTIMES = Registry("runtimes", plugin_kinds=("runtimes", "exporters"))

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (MODELS, DATASETS, ATTACKS, PRUNERS, TRANSFORMS, EXPORTERS,
                                                        RUNTIMES)}


def get_registry(kind: str) -> Registry:
    """The registry of `kind` (models, datasets, attacks, pruners, transforms, exporters, runtimes)."""
    if kind in REGISTRIES:
        return REGISTRIES[kind]
    close = difflib.get_close_matches(kind, list(REGISTRIES), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownNameError(f"unknown kind '{kind}': {hint}choose one of {', '.join(REGISTRIES)}")
