#!/usr/bin/env python
"""Attack throughput: our PGD-10 against an independent PGD-10, and AutoAttack through our wrapper against
pyautoattack called directly.

PGD: ``build_attack("pgd10", eps)`` -- the path `compressor eval` takes -- against torchattacks' ``PGD``
(an independent implementation, never a project dependency: install it outside the project, e.g.
``pip install --no-deps --target /tmp/ta torchattacks``, and pass ``--torchattacks /tmp/ta``; the
folder goes on ``sys.path`` inside this script only). Equal strength: the same eps, step size
(2.5 * eps / 10), 10 steps, uniform random start, cross-entropy, eval mode, the same batch. Beside
them, a "model floor": the 10 forward + backward-to-the-input passes that any PGD-10 must make, with
nothing else, so that the share of time an implementation could still save is visible.

AutoAttack: ``build_attack("aa", eps, seed=0)(model, x, y)`` against ``pyautoattack.AutoAttack(...,
version="standard", seed=0).run_standard_evaluation(x, y, batch_size=len(x))`` on the same images,
whose outputs must be identical; the overhead is the median over rounds of our time / the direct time - 1
(each round runs both back to back, so drifts in machine load cancel).

Workloads:

* ``digits``   -- ``cnn-small`` adversarially trained here on the real scikit-learn digits (PGD-AT, a few
  epochs, seconds), its test images; eps 0.1;
* ``resnet18`` -- the zoo ``resnet18`` (random weights) on CIFAR-10-shaped synthetic images (throughput
  only); eps 8/255. AutoAttack runs on ``digits`` by default (``--aa-workloads``);
* ``resnet20`` / ``resnet4b`` -- the akamaster ResNet-20 and the alpha-beta-CROWN ResNet-4B (random weights,
  ``benchmarks/models``), the models of speed_targets.py, likewise.

Beside ours, "ours, channels_last" runs the same PGD on a channels_last copy of the model (what
``evaluate(..., channels_last=True)`` and the benchmarks' ``--eval-channels-last`` do): same fp32 numbers up
to float rounding; its ratio to ours says whether that layout pays on this device.

Timed calls are interleaved round-robin after warm-up (rotating the order), so that a change in
machine load touches every implementation alike; times are reported as medians, ratios as the median
of the per-round ratios.

Usage (from the repository root)::

    python benchmarks/attack_throughput.py --torchattacks /tmp/ta          # auto device, both workloads
    python benchmarks/attack_throughput.py --device cpu --workloads digits --reps 5 --torchattacks /tmp/ta

Writes ``<out>/attack_throughput-<device-kind>-<YYYY-MM-DD>.json`` and a ``.md`` beside it; an existing
file is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import importlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, accuracy_on, interleaved_times, markdown_header, measuring, paired_ratio,  # noqa: E402
                    resolve_device, result_paths, run_main, time_stats)  # (it puts an uninstalled checkout on the path)

import pyautoattack  # noqa: E402
from pyautoattack import AutoAttack  # noqa: E402

from compressor.attacks import build_attack  # noqa: E402
from compressor.checkpoint import library_versions  # noqa: E402
from compressor.data import load_dataset  # noqa: E402
from compressor.environment import device_kind, is_busy, load_average, machine_info  # noqa: E402
from compressor.errors import CompressorError  # noqa: E402
from compressor.io import atomic_write_text  # noqa: E402
from compressor.models import create_model  # noqa: E402
from compressor.models.external import build_imported  # noqa: E402
from compressor.reporting import fmt, to_json  # noqa: E402
from compressor.training import TrainConfig, Trainer  # noqa: E402
from train_throughput import CIFAR_MEAN, CIFAR_STD  # noqa: E402

FORMAT = "compressor.benchmark.attack_throughput"
DEFAULT_OUT = RESULTS
STEPS = 10
GOAL_SPEEDUP = 1.5  # ours >= 1.5 x the independent implementation
GOAL_OVERHEAD = 0.05  # our AutoAttack wrapper <= 5 % over pyautoattack called directly

# name -> description, notes, eps, (batch, warmup, reps) for PGD on CPU and on CUDA
WORKLOADS: dict[str, dict[str, Any]] = {
    "digits": {"description": "cnn-small, PGD-AT here on the real scikit-learn digits (1x8x8, 10 classes)",
               "notes": "real test images", "eps": 0.1, "cpu": (256, 2, 15), "cuda": (360, 5, 50)},
    "resnet18": {"description": "resnet18 (random weights) on a CIFAR-10 shape (3x32x32, 10 classes)",
                 "notes": "synthetic data: throughput only (uniform-random images, random labels)",
                 "eps": 8 / 255, "cpu": (16, 1, 3), "cuda": (256, 3, 20)},
    **{name: {"description": f"{title} (random weights) on a CIFAR-10 shape (3x32x32, 10 classes)",
              "notes": "synthetic data: throughput only (uniform-random images, random labels)",
              "eps": 8 / 255, "cpu": (256, 1, 3), "cuda": (256, 3, 20), "build": path}
       for name, path, title in (("resnet20", "benchmarks.models.akamaster:resnet20", "akamaster ResNet-20"),
                                 ("resnet4b", "benchmarks.models.abcrown:resnet4b", "alpha-beta-CROWN ResNet-4B"))},
}


# ---------------------------------------------------------------- models and data
def _digits(device: torch.device, epochs: int, seed: int, log: Callable[[str], None]):
    """A cnn-small adversarially trained on digits (PGD-AT, eps 0.1, 5 steps) and the test images."""
    bundle = load_dataset("digits")
    info = bundle.info
    torch.manual_seed(seed)
    model = create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)
    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, adv="pgd", eps=0.1, steps=5, val_steps=5, seed=seed,
                      device=str(device))
    Trainer(model, bundle, cfg, quiet=True).fit()
    model = model.to(device).eval()
    x, y = bundle.test.float_images().to(device), bundle.test.y.to(device)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    log(f"[digits] trained cnn-small (PGD-AT, {epochs} epochs) in {time.perf_counter() - t0:.1f} s: clean test "
        f"accuracy {clean:.3f}")
    return model, x, y, {"training": f"PGD-AT eps 0.1, 5 steps, {epochs} epochs, seed {seed}",
                         "clean_accuracy": clean}


def random_cifar_model(name: str, device: torch.device, n: int, seed: int):
    """Workload `name`'s randomly initialised CIFAR model and `n` random images and labels (model, x, y, about)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    path = WORKLOADS[name].get("build")
    model = (build_imported(path, None, CIFAR_MEAN, CIFAR_STD) if path
             else create_model(name, 10, 3, CIFAR_MEAN, CIFAR_STD)).to(device).eval()
    x = torch.rand((n, 3, 32, 32), generator=gen).to(device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    return model, x, y, {"training": "none (random weights)"}


# ---------------------------------------------------------------- implementations
def _torchattacks(path: Path | None):
    """Import torchattacks, from `path` when given (on sys.path for this process only)."""
    if path is not None:
        if not Path(path).is_dir():
            raise CompressorError(f"--torchattacks {path} is not a folder: give the --target folder of "
                                  "`pip install --no-deps --target DIR torchattacks`")
        sys.path.insert(0, str(path))
    try:
        return importlib.import_module("torchattacks")
    except ImportError as exc:
        raise CompressorError(f"torchattacks is not importable ({exc}): install it outside the project with "
                              "`pip install --no-deps --target /tmp/ta torchattacks` and pass --torchattacks /tmp/ta, "
                              "or pass --no-reference") from None


def _model_floor(model, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The passes any PGD-10 makes: 10 forward + backward-to-the-input, nothing else (no step, no projection)."""
    delta = torch.full_like(x, eps / 2)
    for _ in range(STEPS):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (delta,) = torch.autograd.grad(loss, delta)
    return delta


# ---------------------------------------------------------------- measurements
def measure_pgd(name: str, model, x, y, eps: float, device: torch.device, warmup: int, reps: int, ta,
                log: Callable[[str], None]) -> dict[str, Any]:
    """Our PGD-10 against torchattacks' PGD-10 (when `ta` is given) and the model floor, on one batch."""
    ours = build_attack(f"pgd{STEPS}", eps)
    alpha = ours.options["alpha"]
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    calls: dict[str, Callable[[], Any]] = {"ours": lambda: ours(model, x, y),
                                           "ours, channels_last": lambda: ours(model_cl, x, y)}
    if ta is not None:
        theirs = ta.PGD(model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)
        calls["torchattacks"] = lambda: theirs(x, y)
    calls["model floor"] = lambda: _model_floor(model, x, y, eps)
    log(f"[{name}] PGD-{STEPS}: batch {len(y)}, eps {eps:.4g}, step size {alpha:.4g}, {warmup} warm-up + {reps} "
        f"timed rounds, device {device}")
    times, last = interleaved_times(calls, warmup, reps, device, log, name)
    rows = {impl: time_stats(t, len(y)) for impl, t in times.items()}
    for impl in ("ours", "ours, channels_last", "torchattacks"):
        if impl in rows:
            x_adv = last[impl]
            d = (x_adv - x).flatten(1).abs().amax(1)
            rows[impl]["accuracy_under_attack"] = accuracy_on(model, x_adv, y)
            rows[impl]["max_linf"] = d.max().item()
    res: dict[str, Any] = {"batch_size": len(y), "eps": eps, "alpha": alpha, "steps": STEPS, "random_start": True,
                           "loss": "ce", "warmup_rounds": warmup, "timed_rounds": reps, "implementations": rows,
                           "clean_accuracy": accuracy_on(model, x, y),
                           "model_share_of_ours": paired_ratio(times["model floor"], times["ours"]),
                           "channels_last_speedup": paired_ratio(times["ours"], times["ours, channels_last"])}
    log(f"  [{name}] channels_last: {res['channels_last_speedup']:.2f}x ours in the default layout")
    if "torchattacks" in rows:
        res["speedup_vs_torchattacks"] = paired_ratio(times["torchattacks"], times["ours"])
        res["goal_speedup"] = GOAL_SPEEDUP
        res["goal_met"] = res["speedup_vs_torchattacks"] >= GOAL_SPEEDUP
        # the most any PGD-10 could gain over torchattacks: remove everything but the model's passes
        res["best_possible_speedup"] = paired_ratio(times["torchattacks"], times["model floor"])
        log(f"  [{name}] ours {rows['ours']['images_per_s']:.1f} img/s, torchattacks "
            f"{rows['torchattacks']['images_per_s']:.1f} img/s: speedup {res['speedup_vs_torchattacks']:.2f}x "
            f"(model floor allows at most {res['best_possible_speedup']:.2f}x)")
    return res


def measure_autoattack(name: str, model, x, y, eps: float, device: torch.device, warmup: int, reps: int, seed: int,
                       log: Callable[[str], None]) -> dict[str, Any]:
    """AutoAttack standard through `build_attack("aa")` against pyautoattack's AutoAttack called directly."""
    ours = build_attack("aa", eps, seed=seed)

    def direct() -> torch.Tensor:
        suite = AutoAttack(model, norm="Linf", eps=eps, seed=seed, version="standard", device=device)
        suite.verbose = False
        x_adv, _ = suite.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv

    calls = {"ours": lambda: ours(model, x, y), "pyautoattack direct": direct}
    log(f"[{name}] AutoAttack standard: {len(y)} images, eps {eps:.4g}, seed {seed}, {warmup} warm-up + {reps} timed "
        "rounds")
    rng = torch.get_rng_state()
    with contextlib.redirect_stdout(sys.stderr):
        times, last = interleaved_times(calls, warmup, reps, device, log, f"{name} aa")
    torch.set_rng_state(rng)  # the direct calls reseed the global RNG
    rows = {impl: time_stats(t, len(y)) for impl, t in times.items()}
    for impl in rows:
        rows[impl]["accuracy_under_attack"] = accuracy_on(model, last[impl], y)
    overhead = paired_ratio(times["ours"], times["pyautoattack direct"]) - 1
    log(f"  [{name}] AutoAttack {rows['ours']['images_per_s']:.2f} img/s through ours; wrapper overhead "
        f"{100 * overhead:+.1f} %")
    return {"n": len(y), "eps": eps, "seed": seed, "warmup_rounds": warmup, "timed_rounds": reps,
            "protocol": ours.protocol(), "implementations": rows, "identical_outputs": bool(torch.equal(
                last["ours"], last["pyautoattack direct"])), "clean_accuracy": accuracy_on(model, x, y),
            "wrapper_overhead": overhead, "goal_overhead_max": GOAL_OVERHEAD, "goal_met": overhead <= GOAL_OVERHEAD}


# ---------------------------------------------------------------- report
def render_markdown(res: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    lines = markdown_header(f"Attack throughput ({res['device_kind']}, {res['date']})", res)
    lines += [
        f"- PGD-{STEPS}: ours = `build_attack('pgd{STEPS}', eps)`; reference = torchattacks `PGD` with the same eps, "
        "step size, steps and random start; model floor = the 10 forward + backward-to-input passes alone; "
        f"calls interleaved round-robin; ratios are medians over rounds of the per-round ratio; goal: ours >= "
        f"{GOAL_SPEEDUP} x torchattacks",
        f"- AutoAttack: ours = `build_attack('aa', eps, seed)`; direct = `pyautoattack.AutoAttack(version='standard')"
        f".run_standard_evaluation`; goal: overhead <= {100 * GOAL_OVERHEAD:.0f} %",
        "",
    ]
    for w in res["workloads"]:
        lines += [f"## {w['name']}: {w['description']}", "", f"{w['notes']}; " + ", ".join(
            f"{k.replace('_', ' ')} {fmt(v)}" for k, v in w["model"].items()), ""]
        p = w["pgd"]
        lines += [
            f"### PGD-{STEPS} (batch {p['batch_size']}, eps {p['eps']:.4g}, step size {p['alpha']:.4g}, "
            f"{p['timed_rounds']} timed rounds; clean accuracy {p['clean_accuracy']:.3f})",
            "",
            "| implementation | median s/call | p90 s/call | images/s | accuracy under attack |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for impl, r in p["implementations"].items():
            lines.append(f"| {impl} | {r['median_s']:.4f} | {r['p90_s']:.4f} | {r['images_per_s']:.1f} | "
                         f"{fmt(r.get('accuracy_under_attack'), 3)} |")
        lines.append("")
        if "speedup_vs_torchattacks" in p:
            lines.append(f"Speedup of ours over torchattacks: **{p['speedup_vs_torchattacks']:.2f}x** (goal "
                         f">= {GOAL_SPEEDUP}: {'met' if p['goal_met'] else 'missed'}). The model's {STEPS} forward + "
                         f"backward passes alone take {100 * p['model_share_of_ours']:.0f} % of our time and "
                         f"{100 / p['best_possible_speedup']:.0f} % of torchattacks' (100 % = all of it; the rest "
                         f"is noise), so no correct PGD-{STEPS} can run much faster than either here.")
        else:
            lines.append(f"No reference implementation was run; the model's own passes take "
                         f"{100 * p['model_share_of_ours']:.0f} % of our time.")
        if "channels_last_speedup" in p:
            lines.append(f"Ours on a channels_last copy of the model: **{p['channels_last_speedup']:.2f}x** ours in "
                         "the default layout (median of the per-round ratios; above 1: channels_last is faster here).")
        lines.append("")
        if "autoattack" in w:
            a = w["autoattack"]
            lines += [
                f"### AutoAttack standard ({a['n']} images, eps {a['eps']:.4g}, seed {a['seed']}, "
                f"{a['timed_rounds']} timed rounds; clean accuracy {a['clean_accuracy']:.3f})",
                "",
                "| path | median s/call | p90 s/call | images/s | accuracy under attack |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for impl, r in a["implementations"].items():
                lines.append(f"| {impl} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['images_per_s']:.2f} | "
                             f"{r['accuracy_under_attack']:.3f} |")
            lines += ["", f"Wrapper overhead: **{100 * a['wrapper_overhead']:+.1f} %** (goal <= "
                      f"{100 * GOAL_OVERHEAD:.0f} %: {'met' if a['goal_met'] else 'missed'}); identical adversarial "
                      f"examples: {a['identical_outputs']}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attack_throughput.py",
                                description="images/s of our PGD-10 against torchattacks', and of AutoAttack")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when available")
    p.add_argument("--workloads", default="digits,resnet18", help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    p.add_argument("--aa-workloads", default="digits", help="workloads that also time AutoAttack ('' for none)")
    p.add_argument("--batch", type=int, default=None, help="PGD batch (default per workload: digits 256, resnet18 16 "
                                                           "on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="PGD warm-up rounds (default: digits 2, resnet18 1 on CPU)")
    p.add_argument("--reps", type=int, default=None, help="PGD timed rounds (default: digits 15, resnet18 3 on CPU)")
    p.add_argument("--aa-n", type=int, default=32, help="images for AutoAttack (default 32)")
    p.add_argument("--aa-reps", type=int, default=3, help="AutoAttack timed rounds (default 3, after 1 warm-up)")
    p.add_argument("--eps", type=float, default=None, help="override every workload's eps")
    p.add_argument("--train-epochs", type=int, default=4, help="PGD-AT epochs of the digits model (default 4)")
    p.add_argument("--torchattacks", type=Path, default=None,
                   help="folder holding torchattacks (pip install --no-deps --target DIR torchattacks)")
    p.add_argument("--no-reference", action="store_true", help="skip the torchattacks comparison")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: benchmarks/results)")
    p.add_argument("--force", action="store_true", help="overwrite an existing results file")
    return p


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise CompressorError(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    return names


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path, Path]:
    """Measure and write the results; returns (results, json path, markdown path)."""
    names = _names(args.workloads, "workload")
    if not names:
        raise CompressorError(f"no workload given: choose from {', '.join(WORKLOADS)}")
    aa_names = _names(args.aa_workloads, "--aa-workloads entry")
    for flag, value in (("--batch", args.batch), ("--reps", args.reps), ("--aa-n", args.aa_n),
                        ("--aa-reps", args.aa_reps), ("--train-epochs", args.train_epochs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise CompressorError(f"{flag} must be at least 1, got {value}")
    if args.warmup is not None and args.warmup < 0:
        raise CompressorError(f"--warmup must be at least 0, got {args.warmup}")
    if args.eps is not None and not args.eps > 0:
        raise CompressorError(f"--eps must be > 0, got {args.eps}")
    device = resolve_device(args.device)
    ta = None if args.no_reference else _torchattacks(args.torchattacks)
    started = _dt.datetime.now(_dt.timezone.utc)
    kind = device_kind(device)
    stem = f"attack_throughput-{kind}-{started:%Y-%m-%d}"
    json_path, md_path = result_paths(args.out, stem, args.force)

    with measuring(device, args.threads):
        res = _measure(args, command, device, kind, started, names, aa_names, ta, log)
    atomic_write_text(json_path, to_json(res) + "\n")
    atomic_write_text(md_path, render_markdown(res))
    log(f"wrote {json_path} and {md_path}")
    return res, json_path, md_path


def _measure(args: argparse.Namespace, command: str, device: torch.device, kind: str, started: _dt.datetime,
             names: list[str], aa_names: list[str], ta, log: Callable[[str], None]) -> dict[str, Any]:
    load_start = load_average()
    versions = {**library_versions(), "pyautoattack": pyautoattack.__version__}
    if ta is not None:
        versions["torchattacks (reference)"] = getattr(ta, "__version__", "unknown")
    res: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "date": f"{started:%Y-%m-%d}",
        "started_utc": started.isoformat(timespec="seconds"), "command": command, "device": str(device),
        "device_kind": kind, "machine": machine_info(device), "versions": versions, "load_average_start": load_start,
        "busy_at_start": is_busy(load_start),
        "goals": {"pgd_speedup_min": GOAL_SPEEDUP, "autoattack_overhead_max": GOAL_OVERHEAD},
    }
    log(f"attack throughput on {kind} ({res['machine']['cpu_model']}, torch threads {torch.get_num_threads()}), "
        f"load average {load_start[0]:.2f}")
    if res["busy_at_start"]:
        log("warning: the machine is busy (1-minute load average above half the cores): CPU timings will be noisy; "
            "re-run when it is quiet")
    res["workloads"] = []
    for name in names:
        spec = WORKLOADS[name]
        batch, warmup, reps = spec["cuda" if device.type == "cuda" else "cpu"]
        batch = args.batch or batch
        warmup = warmup if args.warmup is None else args.warmup
        reps = args.reps or reps
        eps = args.eps or spec["eps"]
        if name == "digits":
            model, x_all, y_all, about = _digits(device, args.train_epochs, args.seed, log)
        else:
            model, x_all, y_all, about = random_cifar_model(name, device, max(batch, args.aa_n), args.seed)
        w = {"name": name, "description": spec["description"], "notes": spec["notes"], "model": about,
             "pgd": measure_pgd(name, model, x_all[:batch], y_all[:batch], eps, device, warmup, reps, ta, log)}
        if name in aa_names:
            w["autoattack"] = measure_autoattack(name, model, x_all[:args.aa_n], y_all[:args.aa_n], eps, device,
                                                 1, args.aa_reps, args.seed, log)
        res["workloads"].append(w)
    res["load_average_end"] = load_average()
    res["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("attack_throughput", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
