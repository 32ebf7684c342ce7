"""Checks that keep a robustness number honest: logits not probabilities, live gradients, signs of
gradient masking (`masking.py`), and the global random state left as it was found.

The first two run on a real batch before any attack; the masking checks read the finished results.
Warnings are returned as strings (the evaluation report collects them), never printed here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CompressorError

LogitsFn = Callable[[torch.Tensor], torch.Tensor]

PROBABILITY_TOLERANCE = 1e-3  # rows summing to 1 within this count as a probability output


def logits_fn(model: nn.Module | Callable[[torch.Tensor], Any]) -> LogitsFn:
    """`model` as a function x -> float32 logits on x's device; any callable returning a tensor or an array works."""
    if isinstance(model, nn.Module):
        return model

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if not isinstance(out, torch.Tensor):
            out = torch.from_numpy(np.array(out, dtype=np.float32))  # a copy: attacks may write into the logits
        return out.to(device=x.device, dtype=torch.float32)

    return predict


def check_logits(logits: torch.Tensor) -> None:
    """Refuse a model whose outputs on a real batch are probabilities (rows non-negative, summing to 1)."""
    if logits.ndim != 2 or logits.shape[1] < 2 or logits.shape[0] == 0:
        raise CompressorError(f"the model returns shape {tuple(logits.shape)} for a batch: expected (N, classes) "
                              "logits; check the model and the dataset")
    with torch.no_grad():
        non_negative = bool((logits >= 0).all())
        sums_to_one = bool(((logits.float().sum(1) - 1).abs() <= PROBABILITY_TOLERANCE).all())
    if non_negative and sums_to_one:
        raise CompressorError("the model returns probabilities (non-negative rows summing to 1), not logits: remove "
                              "its final softmax so attacks and losses see logits")


def gradient_warning(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """A warning when the input gradients of the cross-entropy are all zero on a real batch (None when they live).

    A model whose gradients cannot be computed at all is an error: white-box attacks cannot run on it.
    """
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        try:
            loss = F.cross_entropy(model(x).float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CompressorError(f"the model is not differentiable ({reason}): white-box attacks need input "
                                  "gradients; use black-box attacks such as square") from None
    if grad is None:
        raise CompressorError("the model's output does not depend on its input through autograd: white-box attacks "
                              "need input gradients; use black-box attacks such as square")
    zero = grad.flatten(1).abs().amax(1) == 0
    n_zero = int(zero.sum())
    if n_zero == len(zero):
        return (f"input gradients are zero for all {n_zero} samples of a real batch: signs of gradient masking or a "
                "non-differentiable model; white-box results are unreliable, check with square")
    return None


@contextlib.contextmanager
def preserved_rng(device: torch.device | str | None = None) -> Iterator[None]:
    """Save the global CPU RNG state (and the CUDA one when CUDA is in use) and restore it afterwards."""
    device = torch.device(device) if device is not None else None
    devices: set[int] = set()
    if device is not None and device.type == "cuda":
        devices.add(torch.cuda.current_device() if device.index is None else device.index)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices.add(torch.cuda.current_device())  # pyautoattack reseeds the current device
    with torch.random.fork_rng(devices=sorted(devices)):
        yield
