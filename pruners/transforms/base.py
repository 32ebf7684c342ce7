"""The transform interface, spec parsing ("name:arg,key=value") and the order in which transforms apply.

Order (one stage after the other; each transform at most once):

1. ``channels``: remove whole channels with Torch-Pruning's dependency graph (needs plain Conv/Linear layers,
   so it must run before any layer is replaced);
2. ``separable-linear``: replace Linear layers by Kronecker-factored ones;
3. the pruner's masks, on the transformed model (Kronecker factors included), with its phases of training;
   ``nm`` is the pattern of those masks (2:4), so it comes last.

The optimiser of every training phase is built after the structural transforms, on the new parameters.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from compressor.errors import CompressorError
from compressor.models import user_name
from compressor.registry import TRANSFORMS
from compressor.training import Callback

STAGES = {1: "channels", 2: "separable-linear", 3: "nm"}


@dataclass
class TransformContext:
    """What a transform may need besides the model: data and training settings (Taylor importance), the pruner."""

    input_shape: tuple[int, ...]
    data: Any = None  # compressor.data.DataBundle
    config: Any = None  # compressor.training.TrainConfig
    pruner: Any = None  # pruners.base.Pruner
    ctx: Any = None  # compressor.training.distributed.DistContext


class SpecOptions:
    """The key=value options of one --transform, consumed by the transform; leftovers are an error."""

    def __init__(self, transform: str, options: dict[str, str]):
        self.transform = transform
        self.options = dict(options)

    def take(self, key: str, parse: Callable[[str], Any], default: Any, what: str = "value") -> Any:
        """The parsed value of `key` (default when absent); a value that does not parse is a one-line error
        saying it is not a valid `what`."""
        if key not in self.options:
            return default
        text = self.options.pop(key)
        try:
            return parse(text)
        except (ValueError, TypeError):
            raise CompressorError(f"`transforms` {self.transform}: {key}={text!r} is not a valid {what}") from None

    def finish(self, allowed: Sequence[str]) -> None:
        """Reject options nobody took."""
        if self.options:
            key = next(iter(self.options))
            raise CompressorError(f"`transforms` {self.transform} has no option '{key}': it takes "
                                  f"{', '.join(allowed) or 'no options'}")


class Transform:
    """A model transform applied before (or, for patterns, together with) a pruner; registered in TRANSFORMS."""

    name: ClassVar[str] = "transform"
    stage: ClassVar[int] = 0
    structural: ClassVar[bool] = False  # changes the architecture: rebuilt from its checkpoint entry

    @classmethod
    def from_spec(cls, arg: str | None, options: SpecOptions) -> "Transform":
        """Build from the positional argument and the key=value options of a --transform spec."""
        raise NotImplementedError

    def pruner_options(self, method: str, options: dict[str, Any]) -> dict[str, Any]:
        """Check the pairing with pruner `method` and adjust its options before it is built (e.g. a pattern)."""
        return options

    def check(self, model: nn.Module) -> None:
        """Validate against `model` without changing it (globs, shapes): one-line CompressorError."""

    def apply(self, model: nn.Module, context: TransformContext) -> dict[str, Any]:
        """Transform `model` in place; return the checkpoint entry (plain values) that records what was done."""
        raise NotImplementedError

    @classmethod
    def rebuild(cls, model: nn.Module, entry: dict[str, Any]) -> None:
        """Re-create the architecture recorded in `entry` on a freshly built model (weights load afterwards)."""

    def callbacks(self, model: nn.Module) -> list[Callback]:
        """Training callbacks for the phases after the transform (e.g. a regulariser)."""
        return []


def split_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """'channels:0.5,importance=taylor' -> ('channels', '0.5', {'importance': 'taylor'}); 'nm' -> ('nm', None, {})."""
    spec = spec.strip()
    cut = min((i for i in (spec.find(":"), spec.find(",")) if i >= 0), default=len(spec))
    name, rest = spec[:cut], spec[cut + 1:]
    arg, options = None, {}
    for item in (i.strip() for i in rest.split(",")) if rest else ():
        if not item:
            continue
        key, eq, value = item.partition("=")
        if eq:
            options[key.strip()] = value.strip()
        elif arg is None:
            arg = item
        else:
            raise CompressorError(f"`transforms` '{spec}' has two positional arguments ({arg!r}, {item!r}): write "
                                  "NAME[:ARG][,KEY=VALUE...], e.g. channels:0.5,importance=taylor")
    return name.strip(), arg, options


def parse_transform(spec: str) -> Transform:
    """One --transform spec -> its configured Transform (unknown names and options are one-line errors)."""
    name, arg, options = split_spec(spec)
    cls = TRANSFORMS.get(name)
    opts = SpecOptions(name, options)
    return cls.from_spec(arg, opts)


def _order_text() -> str:
    return ", then ".join(STAGES.values())


def parse_transforms(specs: Sequence[str]) -> list[Transform]:
    """Parse --transform specs and validate their order (see the module docstring)."""
    transforms = [parse_transform(s) for s in specs]
    seen: set[str] = set()
    for t in transforms:
        if t.name in seen:
            raise CompressorError(f"`transforms` {t.name} is given twice: give each transform once")
        seen.add(t.name)
    for a, b in zip(transforms, transforms[1:]):
        if b.stage < a.stage:
            raise CompressorError(f"`transforms` {a.name} before `transforms` {b.name} is an impossible order: "
                                  f"transforms apply as {_order_text()}; reorder them")
    return transforms


def check_recorded(transforms: Sequence[Transform], recorded: Sequence[dict]) -> None:
    """Reject a transform that must come before one the checkpoint already records (e.g. channels after separable)."""
    done = [e for e in recorded if e.get("kind") == "transform" and e.get("name") in TRANSFORMS]
    for t in transforms:
        later = [e["name"] for e in done if TRANSFORMS.get(e["name"]).stage > t.stage]
        if later:
            raise CompressorError(f"`transforms` {t.name} cannot follow the model's earlier {later[0]} transform: "
                                  f"transforms apply as {_order_text()}; start from the checkpoint before {later[0]}")


def apply_transforms(model: nn.Module, transforms: Sequence[Transform], context: TransformContext) -> list[dict]:
    """Apply `transforms` in order to `model` in place; their checkpoint entries, in the same order.

    Each structural transform is checked where it happens: the model must still run an example batch of the
    input shape and give the output shape it gave before (a one-line error otherwise, before any training)."""
    entries = []
    shape = output_shape(model, context.input_shape) if any(t.structural for t in transforms) else None
    for t in transforms:
        entries.append(t.apply(model, context))
        if t.structural:
            check_runs(model, context.input_shape, shape, f"`transforms` {t.name}")
    return entries


def example_batch(model: nn.Module, input_shape: Sequence[int], batch: int = 2) -> torch.Tensor:
    """A fixed random batch of `input_shape` (uniform [0, 1) pixels) on the model's device."""
    param = next(model.parameters(), None)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *input_shape, generator=gen)
    return x.to(param.device) if param is not None else x


def output_shape(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The output shape of `model` on an example batch (eval mode, no grad; the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return tuple(model(example_batch(model, input_shape)).shape)
    finally:
        model.train(was_training)


def run_problem(model: nn.Module, input_shape: Sequence[int], expected: tuple[int, ...]) -> str | None:
    """Why `model` does not run an example batch to the `expected` output shape (None when it does)."""
    try:
        got = output_shape(model, input_shape)
    except (RuntimeError, ValueError, IndexError) as exc:
        return f"fails on an example batch ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if got != expected:
        return f"gives output shape {list(got)} instead of {list(expected)}"
    return None


def check_runs(model: nn.Module, input_shape: Sequence[int], expected: tuple[int, ...], what: str) -> None:
    """One-line error when `model` no longer runs an example batch to the `expected` output shape."""
    problem = run_problem(model, input_shape, expected)
    if problem is not None:
        raise CompressorError(f"{what} left a model that {problem}: the model has an operation the transform "
                              "cannot follow; keep the layers around it (e.g. channels:...,ignore=GLOBS)")


def match_layers(model: nn.Module, globs: Sequence[str], kinds: tuple[type, ...], what: str) -> list[str]:
    """Names of `kinds` modules matching any glob; a glob that matches none is an error listing the candidates."""
    names = [n for n, m in model.named_modules() if isinstance(m, kinds)]
    chosen: list[str] = []
    for glob in globs:  # the user's own names match, and so do the loader's (with its wrapper prefix)
        hits = [n for n in names if fnmatch.fnmatchcase(n, glob) or fnmatch.fnmatchcase(user_name(model, n), glob)]
        if not hits:
            shown = ", ".join(user_name(model, n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
            raise CompressorError(f"{what} glob '{glob}' matches no {'/'.join(k.__name__ for k in kinds)} layer: "
                                  f"the candidates are {shown or 'none'}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def parse_globs(text: str) -> list[str]:
    """'classifier.0|blocks.*.mlp.*' -> ['classifier.0', 'blocks.*.mlp.*'] ('|' separates globs)."""
    globs = [g.strip() for g in text.split("|") if g.strip()]
    if not globs:
        raise ValueError(text)
    return globs


GLOBS = "glob list such as 'classifier.0|blocks.*.mlp.*'"


def example_input(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A zero batch of one input, on the model's device, for graph tracing."""
    return torch.zeros(1, *input_shape, device=next(model.parameters()).device)
