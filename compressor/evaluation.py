"""Clean and robust accuracy of a model on a split, with the per-sample worst case over attacks."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .attacks import Attack
from .data import ArraySplit, BatchLoader


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model: nn.Module, split: ArraySplit, attacks: Sequence[Attack] = (), *, batch_size: int = 256,
             n: int | None = None, device: str | torch.device = "cpu", progress=None) -> dict[str, Any]:
    """Clean accuracy, accuracy under each attack and the per-sample worst case, in eval mode and fp32.

    Each attack runs on the points that are classified correctly without attack (the others already
    count as failures), so accuracies are comparable and no time is wasted.
    """
    device = torch.device(device)
    data = split.head(n) if n else split
    loader = BatchLoader(data, batch_size, device=device)
    clean_ok = torch.zeros(len(data), dtype=torch.bool, device=device)
    ok = {a.name: torch.zeros(len(data), dtype=torch.bool, device=device) for a in attacks}
    seconds = {a.name: 0.0 for a in attacks}
    attacked = {a.name: 0 for a in attacks}
    t_clean = 0.0
    with eval_mode(model):
        start = 0
        for x, y in loader:
            sl = slice(start, start + len(y))
            t0 = time.perf_counter()
            with torch.no_grad():
                pred = model(x).argmax(1)
            clean_ok[sl] = pred == y
            _sync(device)
            t_clean += time.perf_counter() - t0
            idx = torch.nonzero(clean_ok[sl]).squeeze(1)  # one sync per batch, outside attack loops
            for a in attacks:
                if len(idx) == 0:
                    continue
                t0 = time.perf_counter()
                x_adv = a(model, x[idx], y[idx])
                with torch.no_grad():
                    survived = model(x_adv).argmax(1) == y[idx]
                ok[a.name][start + idx] = survived
                _sync(device)
                seconds[a.name] += time.perf_counter() - t0
                attacked[a.name] += len(idx)
            if progress is not None:
                progress(len(y))
            start += len(y)
    total = len(data)
    worst = clean_ok.clone()
    for v in ok.values():
        worst &= v
    result: dict[str, Any] = {
        "n": total,
        "clean_accuracy": clean_ok.float().mean().item() if total else 0.0,
        "clean_images_per_s": total / t_clean if t_clean > 0 else None,
        "attacks": {},
    }
    for a in attacks:
        result["attacks"][a.name] = {
            "accuracy": ok[a.name].float().mean().item() if total else 0.0,
            "seconds": seconds[a.name],
            "images_per_s": attacked[a.name] / seconds[a.name] if seconds[a.name] > 0 else None,
            "protocol": a.protocol(),
        }
    if attacks:
        result["worst_case_accuracy"] = worst.float().mean().item() if total else 0.0
    return result
