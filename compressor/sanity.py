"""Checks of a model against itself and against a dataset, run before any work (one line naming the problem)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .errors import CompressorError


def nonfinite_tensors(model: nn.Module) -> dict[str, int]:
    """Parameters and buffers holding NaN or inf: name -> how many such values."""
    found = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                found[name] = bad
    return found


def check_finite_weights(model: nn.Module, what: str, hint: str = "") -> None:
    """Refuse a model whose weights hold NaN or inf (condition numbers, pruning and exports are meaningless)."""
    bad = nonfinite_tensors(model)
    if bad:
        name, count = next(iter(bad.items()))
        more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
        raise CompressorError(f"{what} has non-finite weights ({count} NaN/inf values in {name}{more}): the model is "
                              f"corrupt or diverged; use an earlier checkpoint{hint}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def check_model_fits_data(model: nn.Module | Callable[[torch.Tensor], Any], data: Any, *, what: str = "the model",
                          input_shape: tuple[int, ...] | None = None, split: str = "test") -> None:
    """Refuse data the model cannot classify: other image shapes or channels, or labels beyond its outputs.

    `input_shape` is what the model was built for (from its checkpoint), when known.
    """
    info = data.info
    shape = tuple(info.input_shape)
    if input_shape and tuple(input_shape) != shape:
        raise CompressorError(f"{what} takes {'x'.join(map(str, input_shape))} images but {info.name} has "
                              f"{'x'.join(map(str, shape))}: use a dataset of the model's input size")
    part = data.split(split)
    if len(part) == 0:
        raise CompressorError(f"the {split} split of {info.name} is empty")
    x = part.head(2).float_images()
    device = next((p.device for p in model.parameters()), torch.device("cpu")) if isinstance(model, nn.Module) \
        else torch.device("cpu")
    was_training = model.training if isinstance(model, nn.Module) else False
    try:
        if isinstance(model, nn.Module):
            model.eval()
        with torch.no_grad():
            out = model(x.to(device))
    except (RuntimeError, ValueError, IndexError) as exc:
        raise CompressorError(f"{what} cannot run on {info.name} images ({'x'.join(map(str, shape))}): "
                              f"{_first_line(exc)}") from None
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise CompressorError(f"{what} returns {getattr(out, 'shape', type(out).__name__)} for a batch, not "
                              "(batch, classes) logits")
    top = max((int(s.y.max()) for s in (data.train, data.val, data.test) if s is not None and len(s)), default=-1)
    if top >= out.shape[1]:
        raise CompressorError(f"{info.name} has labels up to {top} but {what} has {out.shape[1]} outputs: use a "
                              "dataset with the model's classes (or a model built for this one)")


MIN_DECLARED_SLACK = 256 * 1024**2  # bytes an architecture may need beyond what its file holds (buffers, pruning)
DECLARED_FACTOR = 64  # structural pruning stores a model up to this much smaller than its unpruned architecture


def declared_bytes(build: Callable[[], nn.Module]) -> int | None:
    """Bytes of the weights and buffers the model `build` makes, measured on the meta device (nothing allocated);
    None when it cannot be built there (it is then built for real and checked there)."""
    try:
        with torch.device("meta"):
            probe = build()
    except CompressorError:
        raise
    except Exception:
        return None
    return sum(t.numel() * t.element_size() for t in [*probe.parameters(), *probe.buffers()])


def building_on_meta() -> bool:
    """Whether models are being built on the meta device now (a size probe: nothing to check inside it)."""
    return torch.empty(()).device.type == "meta"


def check_declared_size(build: Callable[[], nn.Module], state_dict: Any, what: str) -> None:
    """Refuse an architecture whose declared size (e.g. widths or classes in a file's arch_kwargs) is far beyond the
    weights the file holds, before anything is allocated: it is built on the meta device to measure it."""
    need = declared_bytes(build)
    if need is None:
        return
    held = sum(t.numel() * t.element_size() for t in getattr(state_dict, "values", lambda: [])()
               if isinstance(t, torch.Tensor))
    if need > DECLARED_FACTOR * held + MIN_DECLARED_SLACK:
        raise CompressorError(f"{what} declares an architecture of {need / 1e9:.3g} GB of weights but holds "
                              f"{held / 1e6:.3g} MB: its recorded arch_kwargs are corrupt (or hostile); nothing was "
                              "allocated")
