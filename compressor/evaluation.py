"""Clean and robust accuracy of a model on a split, with the per-sample worst case over attacks, the
protocol guards, and the adversarial examples (kept on request, saved as .npz)."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .attacks import Attack, check_logits, gradient_warning, logits_fn, masking_warnings
from .data import ArraySplit, BatchLoader
from .io import atomic_write
from .progress import bar

# progress(stage, images): called after each batch with "clean" or an attack's name
Progress = Callable[[str, int], None]

BALL_TOLERANCE = 1e-5  # float slack when checking that an attack stayed inside the eps-ball and [0, 1]

ADV_FORMAT = "compressor.adversarial/1"
ADV_KEYS_HELP = ("indices (int64, N: positions in the evaluated split), y (int64, N: labels), clean_correct (bool, N), "
                 "x_adv_<attack> (float32, N x C x H x W in [0, 1]; the clean image where the attack did not run or "
                 "failed), robust_<attack> (bool, N), meta (JSON string: format, dataset, split, norm, eps, seed, "
                 "attacks and their protocols)")


@dataclass
class AttackResult:
    """One attack's outcome in an evaluation."""

    accuracy: float
    seconds: float
    images_per_s: float | None
    attacked: int  # images attacked: those classified correctly without attack
    protocol: dict[str, Any]


@dataclass
class Evaluation:
    """Clean and robust accuracy of a model on a split, with its protocol (`compressor.evaluate_model`)."""

    n: int
    clean_accuracy: float
    clean_images_per_s: float | None
    attacks: dict[str, AttackResult]
    worst_case_accuracy: float | None  # per-sample worst case over the attacks; None without attacks
    warnings: list[str]
    dataset: str
    split: str
    eps: float
    norm: str
    seed: int
    normalization: dict[str, Any]
    device: str
    protocol: dict[str, Any]
    note: str | None = None
    adversarial_file: dict[str, Any] | None = None  # path and keys of the saved adversarial examples
    model: str | None = None  # the evaluated file, when a caller records it

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (optional entries that are unset are left out)."""
        out = asdict(self)
        for key in ("worst_case_accuracy", "note", "adversarial_file", "model"):
            if out[key] is None:
                del out[key]
        return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def channels_last_weights(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Hold `model`'s 4-D weights in channels_last inside the block and give back the very tensors it had after.

    Convolutions follow their weights' memory format, so the inputs need no change; in fp32 on a CPU the attack steps
    of an akamaster ResNet-20 (PGD-10, batch 256, one thread) ran 1.23x faster this way, a ResNet-4B 1.04x
    (benchmarks/attack_throughput.py), equal up to float rounding."""
    on = on and not any(is_lazy(p) for p in model.parameters())  # `Module.to` cannot convert unmaterialised ones
    params = {p: p.data for p in model.parameters() if on and p.dim() == 4}
    buffers = [(m, name, b) for m in model.modules() for name, b in m._buffers.items()
               if on and b is not None and b.dim() == 4]  # `Module.to` puts new buffer tensors in place
    if params or buffers:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        for p, data in params.items():
            p.data = data
        for m, name, b in buffers:
            m._buffers[name] = b


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ball_excess(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """How far the batch goes beyond the eps-ball or [0, 1] at worst (a 0-d tensor; <= 0 when inside)."""
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    box = torch.maximum(-x_adv.amin(), x_adv.amax() - 1)
    return torch.maximum((size - eps).amax(), box)


def evaluate(model: nn.Module | Callable[[torch.Tensor], Any], split: ArraySplit, attacks: Sequence[Attack] = (), *,
             batch_size: int = 256, n: int | None = None, device: str | torch.device = "cpu",
             progress: Progress | None = None, keep_adv: bool = False, channels_last: bool = False) -> dict[str, Any]:
    """Clean accuracy, accuracy under each attack and the per-sample worst case, in eval mode and fp32.

    Each attack runs on the points that are classified correctly without attack (the others already
    count as failures), so accuracies are comparable and no time is wasted. `model` may be any callable
    ``x -> logits`` (only black-box attacks work on one without gradients). Protocol guards run on the
    first batch when there are attacks (probabilities instead of logits: an error; all-zero input
    gradients: a warning) and on the results (attacks leaving the eps-ball, signs of gradient masking);
    the warnings are returned in ``warnings``. With `keep_adv`, ``adversarial`` holds the per-sample
    results and the adversarial images (see `save_adversarial`). `channels_last` runs a module's convolutions in
    that memory format (`channels_last_weights`; faster on many CPUs and GPUs) and leaves its weights as they were.
    """
    device = torch.device(device)
    data = split.head(n) if n else split
    loader = BatchLoader(data, batch_size, device=device)
    predict = logits_fn(model)
    total = len(data)
    clean_ok = torch.zeros(total, dtype=torch.bool, device=device)
    ok = {a.name: torch.zeros(total, dtype=torch.bool, device=device) for a in attacks}
    excess = {a.name: torch.zeros((), device=device) for a in attacks}
    seconds = {a.name: 0.0 for a in attacks}
    attacked = {a.name: 0 for a in attacks}
    adv = {a.name: [] for a in attacks} if keep_adv else {}
    warnings: list[str] = []
    nonfinite = torch.zeros((), dtype=torch.long, device=device)  # clean images with NaN/inf logits
    t_clean = 0.0
    module = isinstance(model, nn.Module)
    with (eval_mode(model) if module else nullcontext(), channels_last_weights(model, channels_last and module)
          if module else nullcontext(), ExitStack() as bars):
        shown = {name: bars.enter_context(bar(name, total)) for name in ["clean", *ok]}  # per batch, host counts
        start = 0
        for x, y in loader:
            sl = slice(start, start + len(y))
            t0 = time.perf_counter()
            with torch.no_grad():
                logits = predict(x)
                pred = logits.argmax(1)
                nonfinite += (~torch.isfinite(logits.float())).any(1).sum()
            clean_ok[sl] = pred == y
            _sync(device)
            t_clean += time.perf_counter() - t0
            if start == 0 and attacks:
                check_logits(logits)
                if any(a.white_box for a in attacks):
                    warnings += filter(None, [gradient_warning(predict, x, y)])
            shown["clean"].advance(len(y))
            if progress is not None:
                progress("clean", len(y))
            idx = torch.nonzero(clean_ok[sl]).squeeze(1)  # one sync per batch, outside attack loops
            for a in attacks:
                x_adv = x.clone() if keep_adv else None
                if len(idx):
                    t0 = time.perf_counter()
                    x_a = a(model, x[idx], y[idx])
                    with torch.no_grad():
                        survived = predict(x_a).argmax(1) == y[idx]
                    ok[a.name][start + idx] = survived
                    _sync(device)
                    seconds[a.name] += time.perf_counter() - t0
                    attacked[a.name] += len(idx)
                    excess[a.name] = torch.maximum(excess[a.name], _ball_excess(x_a, x[idx], a.eps, a.norm))
                    if keep_adv:
                        x_adv[idx] = x_a.detach().to(x_adv.dtype)
                if keep_adv:
                    adv[a.name].append(x_adv.cpu())
                shown[a.name].advance(len(y))
                if progress is not None:
                    progress(a.name, len(y))
            start += len(y)
    worst = clean_ok.clone()
    for v in ok.values():
        worst &= v
    result: dict[str, Any] = {
        "n": total,
        "clean_accuracy": clean_ok.float().mean().item() if total else 0.0,
        "clean_images_per_s": total / t_clean if t_clean > 0 else None,
        "channels_last": bool(channels_last and module),
        "attacks": {},
    }
    for a in attacks:
        result["attacks"][a.name] = {
            "accuracy": ok[a.name].float().mean().item() if total else 0.0,
            "seconds": seconds[a.name],
            "images_per_s": attacked[a.name] / seconds[a.name] if seconds[a.name] > 0 else None,
            "attacked": attacked[a.name],
            "protocol": a.protocol(),
        }
        if excess[a.name].item() > BALL_TOLERANCE:
            warnings.append(f"{a.name} returned images up to {excess[a.name].item():.2g} outside the {a.norm} "
                            f"eps-ball or [0, 1]: its accuracy is not a valid robustness number")
        warnings += [w for w in getattr(a, "warnings", []) if w not in warnings]
    if attacks:
        result["worst_case_accuracy"] = worst.float().mean().item() if total else 0.0
        warnings += masking_warnings(result["attacks"], attacks)
    if int(nonfinite):
        warnings.insert(0, f"the model returned NaN/inf logits for {int(nonfinite)} of {total} clean images: these "
                           "accuracies are meaningless; check its weights (compressor inspect)")
    result["warnings"] = warnings
    if keep_adv:
        result["adversarial"] = {
            "indices": torch.arange(total), "y": data.y.clone(), "clean_correct": clean_ok.cpu(),
            "x_adv": {name: torch.cat(parts) if parts else data.float_images() for name, parts in adv.items()},
            "robust": {name: v.cpu() for name, v in ok.items()},
        }
    return result


def save_adversarial(path: str | Path, adversarial: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write `evaluate(..., keep_adv=True)["adversarial"]` to an .npz atomically (keys: `ADV_KEYS_HELP`)."""
    arrays: dict[str, np.ndarray] = {
        "indices": adversarial["indices"].numpy().astype(np.int64),
        "y": adversarial["y"].numpy().astype(np.int64),
        "clean_correct": adversarial["clean_correct"].numpy().astype(bool),
        "meta": np.array(json.dumps({"format": ADV_FORMAT, "keys": ADV_KEYS_HELP, **meta})),
    }
    for name, x_adv in adversarial["x_adv"].items():
        arrays[f"x_adv_{name}"] = x_adv.numpy().astype(np.float32)
        arrays[f"robust_{name}"] = adversarial["robust"][name].numpy().astype(bool)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare name
            np.savez(f, **arrays)

    return atomic_write(path, write)
