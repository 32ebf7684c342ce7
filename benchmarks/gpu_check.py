#!/usr/bin/env python
"""GPU check: the deployment half of the product measured on one GPU in a single short, guarded run.

Five parts, each in its own process with its own time budget, so that a crash, a hang or a missing
package in one part loses nothing of the others (a part saves what it has measured after every step;
a part that runs out of time is killed and keeps what it saved):

1. ``tests``  -- the suite's CUDA tests (those whose ``skipif`` reason names CUDA: they skip on a CPU
   machine), run by pytest with a JUnit XML report, pass / fail / skip per test;
2. ``train``  -- training-step throughput of the zoo ResNet-18 on the CIFAR-10 shape, standard / PGD-10 /
   TRADES-10 (``train_throughput.measure_workload``), fp32 eager vs bf16 + channels_last vs bf16 +
   channels_last + ``torch.compile``: images/s and the ratios between the three;
3. ``attack`` -- our PGD-20 (``build_attack("pgd20")``) against a plain PGD loop written here with the same
   eps, step size, steps, random start and loss (images/s, interleaved rounds), both also run on a small
   adversarially trained CIFAR model to show equal strength; AutoAttack standard images/s on that model;
4. ``deploy`` -- latency p50/p90/p99 at batch 1 and 128 of dense vs channel-pruned (50 %, Torch-Pruning)
   ResNet-18, PyTorch eager vs AOTInductor (``exporters.aoti.export_aoti``), and 2:4 semi-structured
   (``exporters.aoti.semi_structured_speedup``) vs dense matmuls on the wide Linear layers of
   ``vgg16_bn_fc4096``, the CIFAR ViT's MLP and a ViT-B/16-shaped MLP, fp16 and bf16;
5. ``prune``  -- a short robust-pruning run on a CIFAR-10 slice (see ``make_slice``: fine-tune on test images
   0-4999, evaluate on the disjoint 9000-9999), sized by a timed pilot to the minutes left.

Everything lands in ``--out`` (default ``$OUT``): ``gpu_check.json``, ``gpu_check.md``, ``gpu_check.log``
and ``gpu_check-tests.xml``, with the GPU, driver, CUDA and library versions. ``--dry-run`` runs the same
code on the CPU with tiny sizes in seconds (AOTInductor compiles are skipped there, ``torch.compile`` uses
the ``eager`` backend). Packages missing on the GPU machine (torch-pruning, pyautoattack) and the CIFAR
slice travel in ``.gpu-carry/``, which ``benchmarks/gpu_pack.sh`` prepares; ``benchmarks/gpu_check.sh``
runs this script with them on the path.

Usage (from the repository root)::

    benchmarks/gpu_pack.sh                      # once, here: carry folder + the device command
    benchmarks/gpu_check.sh "$OUT"              # on the GPU machine (under 8 minutes on one H100)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc   # CPU, seconds
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CARRY = REPO / ".gpu-carry"
SLICE = CARRY / "cifar10_slice.npz"
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10_test.npz"
FORMAT = "compressor.benchmark.gpu_check"
PARTS = ("tests", "train", "attack", "deploy", "prune")
# hard time caps per part (seconds); "prune" gets what is left of the total, at most its cap
BUDGETS = {"gpu": {"tests": 75, "train": 130, "attack": 75, "deploy": 130, "prune": 150, "total": 460},
           "dry": {"tests": 90, "train": 90, "attack": 90, "deploy": 90, "prune": 90, "total": 400}}
MIN_PRUNE_S = 30
# the CIFAR-10 slice: the official test order, a fixed first part to fine-tune on, a disjoint held-out part
SLICE_TRAIN = (0, 5000)
SLICE_TEST = (9000, 10000)
EPS = 8 / 255
CUDA_REASON = re.compile(r"cuda", re.I)  # a skipif reason naming CUDA marks a test that needs the GPU


# ================================================================ helpers shared by both processes
def make_slice(src: Path, dst: Path, train: tuple[int, int] = SLICE_TRAIN, test: tuple[int, int] = SLICE_TEST) -> dict:
    """Write the CIFAR-10 slice: x_train/y_train = src[train], x_test/y_test = src[test] (disjoint, official order)."""
    import numpy as np

    if not (train[1] <= test[0] or test[1] <= train[0]):
        raise ValueError(f"the fine-tuning part {train} and the held-out part {test} overlap")
    with np.load(src, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.npz")
    np.savez_compressed(tmp, x_train=x[train[0]:train[1]], y_train=y[train[0]:train[1]],
                        x_test=x[test[0]:test[1]], y_test=y[test[0]:test[1]])
    os.replace(tmp, dst)
    return {"source": str(src), "train_indices": list(train), "test_indices": list(test), "bytes": dst.stat().st_size}


def tiny_slice(src: Path, dst: Path, train_n: int = 96, test_n: int = 64) -> Path:
    """For a dry run: the first images of each part of the slice `src` (or of ../shared's test set) in `dst`."""
    import numpy as np

    if src.is_file():
        with np.load(src, allow_pickle=False) as d:
            parts = {k: d[k][:train_n if k.endswith("train") else test_n]
                     for k in ("x_train", "y_train", "x_test", "y_test")}
        np.savez_compressed(dst, **parts)
    elif SHARED_CIFAR.is_file():
        make_slice(SHARED_CIFAR, dst, (SLICE_TRAIN[0], SLICE_TRAIN[0] + train_n), (SLICE_TEST[0], SLICE_TEST[0] + test_n))
    return dst


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_safe(obj: Any) -> Any:
    try:
        from compressor.reporting import jsonable

        return jsonable(obj)
    except Exception:  # the library itself may be what failed to import
        return json.loads(json.dumps(obj, default=str))


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


# ================================================================ the part process
class PartContext:
    """What a part sees: device, sizes, deadline, a work folder, and `save` that persists results at once."""

    def __init__(self, name: str, json_path: Path, deadline: float, dry: bool, work: Path, data: Path | None,
                 device: str):
        import torch

        self.name, self.json_path, self.deadline, self.dry, self.work, self.data = name, json_path, deadline, dry, \
            work, data
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.cuda = self.device.type == "cuda"
        self.result: dict[str, Any] = {}
        if dry:  # one thread: a second one stalls on every op whenever another process holds a core
            torch.set_num_threads(1)

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self, key: str, value: Any) -> None:
        self.result[key] = value
        _write_text(self.json_path, json.dumps(_json_safe(self.result), indent=1))

    def log(self, msg: str) -> None:
        print(f"[{self.name} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def sync(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)

    def guarded(self, key: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        """Run one step of a part; its failure (or too little time) is recorded under `key`, not raised."""
        if self.left() < need_s:
            self.save(key, {"skipped": f"not enough time left ({self.left():.0f} s < {need_s:.0f} s)"})
            return None
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # one sub-measurement failing must not lose the others
            self.log(f"{key} failed: {_error_line(exc)}")
            self.save(key, {"error": _error_line(exc), "traceback": traceback.format_exc(limit=6)[-2000:],
                            "seconds": time.perf_counter() - t0})
            return None
        if isinstance(value, dict):
            value = {**value, "seconds": time.perf_counter() - t0}
        self.save(key, value)
        return value


def _load_slice(ctx: PartContext):
    """The CIFAR-10 slice as a DataBundle (train/val/test), or None when it is not there."""
    from compressor.data import load_dataset

    if ctx.data is None or not ctx.data.is_file():
        return None
    return load_dataset(f"npz:{ctx.data}")


# ---------------------------------------------------------------- 1. tests
def part_tests(ctx: PartContext, junit: Path) -> None:
    """The CUDA tests of the suite, selected by the gpu_check_select plugin, with a JUnit XML report."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if "cuda" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-p", "gpu_check_select", "-q", "-rs", "-o", "addopts=",
           "-p", "no:cacheprovider", f"--junitxml={junit}", *files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    ctx.save("command", shlex.join(cmd))
    ctx.save("files", files)
    ctx.log(f"pytest on {len(files)} files: {' '.join(files)}")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, timeout=max(5.0, ctx.left() - 5), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
    print(out, flush=True)
    ctx.save("exit_code", rc)
    ctx.save("seconds_pytest", time.perf_counter() - t0)
    ctx.save("output_tail", out[-3000:])
    if junit.is_file():
        ctx.save("junit", parse_junit(junit))


def parse_junit(path: Path) -> dict[str, Any]:
    """Per-test outcome (passed / failed / error / skipped, with the message) and the counts, from JUnit XML."""
    import xml.etree.ElementTree as ET

    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or el.text or "").strip().splitlines()[0][:300] if (
                    el.get("message") or el.text) else ""
                break
        tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "tests": tests}


# ---------------------------------------------------------------- 2. training throughput
TRAIN_VARIANTS = [  # name, TrainConfig amp, channels_last, compile?
    ("fp32-eager", "off", "off", False),
    ("bf16-channels_last", "bf16", "on", False),
    ("bf16-channels_last-compile", "bf16", "on", True),
]


def part_train(ctx: PartContext) -> None:
    """train_throughput.measure_workload on ResNet-18 (CIFAR shape) for each precision / layout / compile variant."""
    import train_throughput as tt

    # dry run: cnn-small on digits (ResNet-18 steps take seconds each on a shared CPU)
    workload = "digits" if ctx.dry else "resnet18"
    batch, warmup, steps = (16, 1, 1) if ctx.dry else (128, 5, 20)
    backend = "eager" if ctx.dry else "inductor"  # eager: dynamo tracing without the minutes of CPU codegen
    ctx.save("settings", {"workload": workload, "model": tt.WORKLOADS[workload]["model"], "batch": batch,
                          "warmup": warmup, "steps": steps, "attack_steps": tt.ATTACK_STEPS, "compile_backend": backend,
                          "data": tt.WORKLOADS[workload]["notes"]})
    for name, amp, cl, comp in TRAIN_VARIANTS:
        # compiling ResNet-18's training and attack graphs takes a minute or more on the GPU machine
        need = (90 if comp else 15) if not ctx.dry else 1
        ctx.guarded(name, lambda: tt.measure_workload(workload, ctx.device, warmup=warmup, steps=steps, batch=batch,
                                                      amp=amp, channels_last=cl,
                                                      compile_backend=backend if comp else None,
                                                      log=ctx.log), need_s=need)
    base = ctx.result.get("fp32-eager", {})
    ratios = {}
    for name, *_ in TRAIN_VARIANTS[1:]:
        v = ctx.result.get(name, {})
        if "modes" in v and "modes" in base:
            ratios[name] = {m["mode"]: m["images_per_s"] / b["images_per_s"] for m, b in zip(v["modes"], base["modes"])}
    ctx.save("speedup_vs_fp32_eager", ratios)


# ---------------------------------------------------------------- 3. attack throughput
def reference_pgd(model, x, y, eps: float, alpha: float, steps: int):
    """A plain L-inf PGD loop (uniform start in the eps-ball, sign steps, clip to the ball and to [0, 1])."""
    import torch
    import torch.nn.functional as F

    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def _train_small_robust(ctx: PartContext, data) -> dict[str, Any]:
    """cnn-small adversarially trained (PGD-AT, eps 8/255) on the slice: the model AutoAttack runs against."""
    import torch

    from compressor.models import create_model
    from compressor.training import TrainConfig, Trainer

    torch.manual_seed(0)
    info = data.info
    model = create_model("cnn-small", info.num_classes, info.input_shape[0], info.mean, info.std)
    epochs = 1 if ctx.dry else 6
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, adv="pgd", eps=EPS, steps=5, val_steps=10, val_n=500,
                      device=str(ctx.device), seed=0, log_every=10**6)
    res = Trainer(model, data, cfg, quiet=True).fit()
    ctx.robust_model = model.eval()
    return {"model": "cnn-small", "training": f"PGD-AT eps 8/255, 5 steps, {epochs} epochs, batch 128, lr 0.05",
            "train_images": len(data.train), "best_val": res.best_metrics, "train_seconds": res.seconds}


def part_attack(ctx: PartContext) -> None:
    """Our PGD-20 vs the reference loop (throughput on ResNet-18, strength on a robust model); AutoAttack images/s."""
    import torch

    import attack_throughput as at
    from compressor.attacks import build_attack

    steps = 20
    ours = build_attack(f"pgd{steps}", EPS)
    alpha = ours.options["alpha"]
    batch, warmup, reps = (4, 1, 2) if ctx.dry else (256, 3, 10)
    ctx.save("settings", {"eps": EPS, "alpha": alpha, "steps": steps, "random_start": True, "loss": "ce (sum)",
                          "batch": batch, "warmup_rounds": warmup, "timed_rounds": reps,
                          "reference": "reference_pgd in benchmarks/gpu_check.py (plain loop)"})

    def pgd_throughput() -> dict[str, Any]:
        model, x, y, about = at.random_resnet18(ctx.device, batch, 0)
        if ctx.dry:  # the same synthetic CIFAR-shaped images, a small model (seconds, not minutes, on a CPU)
            from compressor.models import create_model
            from train_throughput import CIFAR_MEAN, CIFAR_STD

            model = create_model("cnn-small", 10, 3, CIFAR_MEAN, CIFAR_STD).to(ctx.device).eval()
        calls = {"ours": lambda: ours(model, x, y), "reference loop": lambda: reference_pgd(model, x, y, EPS, alpha,
                                                                                             steps)}
        times, last = at.interleaved_times(calls, warmup, reps, ctx.device, ctx.log, "pgd20")
        rows = {k: at.time_stats(t, batch) for k, t in times.items()}
        for k in rows:
            rows[k]["max_linf"] = float((last[k] - x).abs().max())
        return {"model": f"{'cnn-small' if ctx.dry else 'resnet18'} (random weights), synthetic CIFAR-shaped images",
                "implementations": rows,
                "speedup_ours_vs_reference": at.paired_ratio(times["reference loop"], times["ours"])}

    ctx.guarded("pgd20_throughput", pgd_throughput, need_s=10 if not ctx.dry else 1)
    data = _load_slice(ctx)
    if data is None:
        ctx.save("robust_model", {"skipped": f"no CIFAR-10 slice at {ctx.data}: run benchmarks/gpu_pack.sh"})
        return
    if ctx.guarded("robust_model", lambda: _train_small_robust(ctx, data), need_s=20 if not ctx.dry else 1) is None:
        return
    model = ctx.robust_model
    n = 16 if ctx.dry else 500
    test = data.test.head(n)
    x, y = test.float_images().to(ctx.device), test.y.to(ctx.device)

    def strength() -> dict[str, Any]:
        torch.manual_seed(0)
        out = {"n": len(y), "clean": at.accuracy_on(model, x, y),
               "ours": at.accuracy_on(model, ours(model, x, y), y),
               "reference loop": at.accuracy_on(model, reference_pgd(model, x, y, EPS, alpha, steps), y)}
        ctx.log(f"PGD-20 accuracy on the robust model: ours {out['ours']:.3f}, reference {out['reference loop']:.3f}")
        return out

    ctx.guarded("pgd20_strength", strength, need_s=5 if not ctx.dry else 1)
    aa_n = 2 if ctx.dry else 200

    def autoattack() -> dict[str, Any]:
        aa = build_attack("aa", EPS, seed=0)
        xa, ya = x[:aa_n], y[:aa_n]
        if ctx.dry:  # misclassified images: AutoAttack's whole code path in seconds (its numbers mean nothing)
            with torch.no_grad():
                wrong = (model(x).argmax(1) != y).nonzero().flatten()[:aa_n]
            xa, ya = x[wrong], y[wrong]
        ctx.sync()
        t0 = time.perf_counter()
        x_adv = aa(model, xa, ya)
        ctx.sync()
        dt = time.perf_counter() - t0
        acc = at.accuracy_on(model, x_adv, ya)
        ctx.log(f"AutoAttack standard on {len(ya)} images: {dt:.1f} s, {len(ya) / dt:.1f} images/s, robust {acc:.3f}")
        return {"n": len(ya), "seconds_attack": dt, "images_per_s": len(ya) / dt,
                "clean": at.accuracy_on(model, xa, ya),
                "robust_accuracy": acc, "protocol": aa.protocol()}

    ctx.guarded("autoattack", autoattack, need_s=25 if not ctx.dry else 1)


# ---------------------------------------------------------------- 4. deployment
def _latency(ctx: PartContext, fn: Callable[[], Any], batch: int) -> dict[str, Any]:
    from exporters.latency import measure_latency

    runs = 3 if ctx.dry else (300 if batch == 1 else 100)
    return measure_latency(fn, warmup=1 if ctx.dry else 20, runs=runs, batch_size=batch, cuda_events=ctx.cuda,
                           sync=None)


def part_deploy(ctx: PartContext) -> None:
    """Dense vs channels-50 ResNet-18, eager vs AOTInductor, batch 1 and 128; 2:4 vs dense on wide Linear layers."""
    import torch

    import structural
    from compressor.flops import count_macs

    batches = (1, 8) if ctx.dry else (1, 128)
    arch = "cnn-small" if ctx.dry else "resnet18"  # dry run: the same transform on a small model
    ctx.save("settings", {"arch": arch, "batches": list(batches), "precision": "fp32", "input": "3x32x32, uniform random",
                          "timing": "CUDA events around each call" if ctx.cuda else "host clock"})
    models = {}
    for key, spec in (("dense", None), ("channels-50", "channels:0.5")):
        def build(key=key, spec=spec):
            model, entries = structural.build(arch, spec, 0)
            info = {"transform": spec, "params": sum(p.numel() for p in model.parameters()),
                    "macs": count_macs(model, (3, 32, 32))}
            models[key] = model.to(ctx.device).eval()
            return info
        ctx.guarded(f"model:{key}", build)
    for key, model in models.items():
        model.to(ctx.device)
        for b in batches:
            x = torch.rand(b, 3, 32, 32, device=ctx.device)

            def eager(model=model, x=x, b=b):
                with torch.inference_mode():
                    return _latency(ctx, lambda: model(x), b)
            ctx.guarded(f"latency:{key}:eager:b{b}", eager)
    for key, model in models.items():
        if ctx.dry:
            ctx.save(f"aoti:{key}", {"skipped": "dry run: an AOTInductor compile takes ~30 s per model on the CPU "
                                                "(tests/exporters/test_aoti.py covers the CPU path)"})
            continue

        def aoti(key=key, model=model) -> dict[str, Any]:
            from exporters.aoti import AotiRunner, export_aoti

            path = ctx.work / f"{arch}-{key}.pt2"
            res = export_aoti(model, path, input_shape=(3, 32, 32), precision="fp32", batch_sizes=list(batches),
                              device=str(ctx.device), force=True)
            ctx.runners[key] = AotiRunner(path, device=str(ctx.device), trust_program=True)  # compiled just above
            return {"compile_seconds": res.seconds, "file_bytes": res.file_bytes, "max_abs_diff": res.max_abs_diff,
                    "tolerance": res.tolerance, "batch_range": list(batches)}
        if ctx.guarded(f"aoti:{key}", aoti, need_s=60) is None:
            continue
        for b in batches:
            x = torch.rand(b, 3, 32, 32, device=ctx.device)

            def timed(key=key, x=x, b=b):
                loaded = ctx.runners[key].model  # the package itself on a CUDA tensor: no host copy timed
                with torch.inference_mode():
                    return _latency(ctx, lambda: loaded(x), b)
            ctx.guarded(f"latency:{key}:aoti:b{b}", timed)
    ctx.guarded("semi_structured", lambda: semi_structured(ctx), need_s=5)


def _two_four(model, keep: Callable[[str, Any], bool]) -> list[str]:
    """Impose 2:4 (the 2 largest magnitudes of every 4 inputs) on the Linear layers `keep` selects."""
    import torch

    from pruners.patterns import nm_eligible

    names = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and m.in_features % 4 == 0 and keep(name, m):
                m.weight.mul_(nm_eligible(m.weight.abs(), 2, 4))
                names.append(name)
    return names


def semi_structured(ctx: PartContext) -> dict[str, Any]:
    """2:4 vs dense per wide Linear layer, fp16 and bf16, at a deployment and a large batch of rows."""
    import torch

    from compressor.models import create_model
    from exporters.aoti import semi_structured_speedup

    torch.manual_seed(0)
    vgg = create_model("vgg16_bn_fc4096", num_classes=10, in_chans=3)
    vit = create_model("vit_small_cifar", num_classes=10, in_chans=3)
    vit_b_mlp = torch.nn.Sequential(torch.nn.Linear(768, 3072), torch.nn.GELU(), torch.nn.Linear(3072, 768))
    workloads = {
        "vgg16_bn_fc4096 classifier": (vgg, _two_four(vgg, lambda n, m: m.out_features >= 1024)),
        "vit_small_cifar MLP (block 0)": (vit, _two_four(vit, lambda n, m: ".0.mlp." in f".{n}.")),
        "ViT-B/16-shaped MLP (768-3072-768)": (vit_b_mlp, _two_four(vit_b_mlp, lambda n, m: True)),
    }
    rows_of = (128, 2048)  # rows of the matmul: images (VGG) or tokens (ViT)
    out: dict[str, Any] = {"batch_rows": list(rows_of), "workloads": {}}
    if not ctx.cuda:
        out["unsupported"] = "no CUDA GPU: to_sparse_semi_structured needs one (layers selected and masked only)"
    for name, (model, layers) in workloads.items():
        entry = {"layers_2to4": layers, "runs": []}
        out["workloads"][name] = entry
        if not ctx.cuda:
            continue
        for precision in ("fp16", "bf16"):
            for rows in rows_of:
                try:
                    entry["runs"] += semi_structured_speedup(model, batch_size=rows, runs=3 if ctx.dry else 100,
                                                             precision=precision)
                except Exception as exc:  # e.g. no CUDA in a dry run: recorded, the other workloads go on
                    entry["runs"].append({"precision": precision, "batch_size": rows, "unsupported": _error_line(exc)})
        ctx.save("semi_structured", out)
    return out


# ---------------------------------------------------------------- 5. robust pruning
def part_prune(ctx: PartContext) -> None:
    """A dense ResNet-18 adversarially trained on the slice, pruned by magnitude and TSCNC (90 %), PGD-20 held out."""
    import copy
    from dataclasses import replace

    import torch

    from compressor.models import create_model
    from compressor.training import TrainConfig, Trainer
    from compressor.workflows import evaluate_model
    from pruners import make_pruner, prune_model

    data = _load_slice(ctx)
    if data is None:
        ctx.save("skipped", f"no CIFAR-10 slice at {ctx.data}: run benchmarks/gpu_pack.sh")
        return
    info = data.info
    ctx.save("data", {"file": str(ctx.data), "notes": info.notes, "splits": {k: len(getattr(data, k))
                                                                             for k in ("train", "val", "test")},
                      "split": f"fine-tune on CIFAR-10 test images {SLICE_TRAIN[0]}..{SLICE_TRAIN[1] - 1} (validation "
                               f"carved from them), evaluate on the disjoint held-out {SLICE_TEST[0]}.."
                               f"{SLICE_TEST[1] - 1} (official order)"})
    arch = "cnn-small" if ctx.dry else "resnet18"
    batch = 32 if ctx.dry else 256
    base = TrainConfig(batch_size=batch, adv="pgd", eps=EPS, steps=5 if not ctx.dry else 2, val_steps=10,
                       val_n=500 if not ctx.dry else 16, device=str(ctx.device), seed=0, log_every=10**6)

    def new_model():
        torch.manual_seed(0)
        return create_model(arch, info.num_classes, info.input_shape[0], info.mean, info.std)

    # pilot: time a few steps to size the epochs to the budget (validation and evaluation ~ 25 % on top)
    pilot = Trainer(new_model(), data, base, quiet=True)
    pilot.build_optimizer()
    xb, yb = next(iter(pilot.loader))
    for _ in range(2):
        pilot.training_step(xb, yb)
    ctx.sync()
    t0 = time.perf_counter()
    for _ in range(3):
        pilot.training_step(xb, yb)
    ctx.sync()
    epoch_s = (time.perf_counter() - t0) / 3 * len(pilot.loader) * 1.25
    del pilot
    budget = ctx.left() - 25  # evaluation and the writing of results
    dense_epochs = 1 if ctx.dry else max(1, min(30, int(0.5 * budget / epoch_s)))
    per_method = 3 if ctx.dry else max(3, min(10, int(0.22 * budget / epoch_s)))
    prune_epochs = max(2, per_method // 2)  # TSCNC's two iterative rounds need two prune epochs
    finetune_epochs = per_method - prune_epochs
    plan = {"arch": arch, "batch": batch, "pilot_epoch_seconds": epoch_s, "budget_seconds": budget,
            "dense": f"PGD-AT eps 8/255, 5 steps, {dense_epochs} epochs, lr 0.1 cosine",
            "epochs_prune": prune_epochs, "epochs_finetune": finetune_epochs, "sparsity": 0.9,
            "evaluation": "clean and PGD-20 on the held-out part (all of it)"}
    ctx.save("plan", plan)
    ctx.log(f"pilot: {epoch_s:.1f} s/epoch -> dense {dense_epochs} epochs, {prune_epochs}+{finetune_epochs} per method")

    def evaluate(model) -> dict[str, Any]:
        r = evaluate_model(model, data, ["pgd20"], eps=EPS, device=str(ctx.device))
        return {"n": r.n, "clean": r.clean_accuracy, "pgd20": r.attacks["pgd20"].accuracy}

    dense = new_model()

    def train_dense() -> dict[str, Any]:
        res = Trainer(dense, data, replace(base, epochs=dense_epochs), quiet=True).fit()
        return {"train_seconds": res.seconds, "best_epoch": res.best_epoch, "best_val": res.best_metrics,
                **evaluate(dense.eval())}

    if ctx.guarded("dense", train_dense) is None:
        return
    for method in ("magnitude", "tscnc"):
        def run(method=method) -> dict[str, Any]:
            model = copy.deepcopy(dense)
            pruner = make_pruner(method, sparsity=0.9)
            cfg = replace(base, adv=pruner.default_adv)
            job = prune_model(model, data, pruner, cfg, epochs_prune=prune_epochs, epochs_finetune=finetune_epochs,
                              quiet=True)
            ev = evaluate(model.eval())
            nz = sum(int((p != 0).sum()) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)
            tot = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)
            ctx.log(f"{method} 90 %: clean {ev['clean']:.3f}, PGD-20 {ev['pgd20']:.3f} ({job['seconds']:.0f} s)")
            return {"adv": cfg.adv, "train_seconds": job["seconds"], "weight_sparsity": 1 - nz / tot, **ev}
        ctx.guarded(f"prune:{method}", run, need_s=per_method * epoch_s * 0.8)


def run_part(args: argparse.Namespace) -> int:
    """Entry point of a part's own process."""
    sys.path.insert(0, str(HERE))
    import common  # noqa: F401  (puts an uninstalled checkout on the path)

    ctx = PartContext(args.part, Path(args.part_json), args.deadline, args.dry_run, Path(args.work),
                      Path(args.data) if args.data else None, args.device)
    ctx.runners = {}
    ctx.save("device", str(ctx.device))
    fn = {"tests": lambda: part_tests(ctx, Path(args.junit)), "train": lambda: part_train(ctx),
          "attack": lambda: part_attack(ctx), "deploy": lambda: part_deploy(ctx), "prune": lambda: part_prune(ctx)}
    fn[args.part]()
    return 0


# ================================================================ the orchestrator
def _environment(device: str) -> dict[str, Any]:
    """GPU, driver, CUDA, machine and versions; what cannot be read is recorded as an error, not raised."""
    env: dict[str, Any] = {}
    try:
        import torch

        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))
        env["device"] = str(dev)
        try:
            from compressor.checkpoint import library_versions
            from compressor.environment import device_kind, machine_info

            env.update(machine=machine_info(dev), versions=library_versions(), device_kind=device_kind(dev))
        except Exception as exc:
            env["compressor_import_error"] = _error_line(exc)
            env["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__}
            env["device_kind"] = dev.type
        from importlib.metadata import PackageNotFoundError, version

        for pkg in ("torch-pruning", "pyautoattack", "triton", "onnx", "onnxruntime", "timm", "pytest"):
            try:
                env.setdefault("versions", {})[pkg] = version(pkg)
            except PackageNotFoundError:
                try:  # carried as a plain folder on PYTHONPATH (no dist-info): the module's own version
                    mod = __import__(pkg.replace("-", "_"))
                    env["versions"][pkg] = str(getattr(mod, "__version__", "present"))
                except Exception:
                    env["versions"][pkg] = "missing"
        if dev.type == "cuda":
            env["cuda"] = {"runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "capability": ".".join(map(str, torch.cuda.get_device_capability(dev)))}
            try:
                smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                                      "power.limit", "--format=csv,noheader"], capture_output=True, text=True,
                                     timeout=20)
                env["nvidia_smi"] = smi.stdout.strip()
            except Exception as exc:
                env["nvidia_smi"] = _error_line(exc)
    except Exception as exc:
        env["error"] = _error_line(exc)
    return env


def _run_part(name: str, args: argparse.Namespace, work: Path, budget: float, log_file, junit: Path) -> dict:
    """One part in its own process (own session), killed at `budget` seconds; returns its record."""
    part_json = work / f"{name}.json"
    deadline = time.time() + budget
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--part", name, "--part-json", str(part_json),
           "--deadline", str(deadline - 3), "--work", str(work), "--device", args.device, "--junit", str(junit)]
    if args.data:
        cmd += ["--data", str(args.data)]
    if args.dry_run:
        cmd.append("--dry-run")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log_file.write(line)
            log_file.flush()
            tail.append(line)
            del tail[:-40]

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    status = "ok"
    try:
        rc = proc.wait(timeout=budget)
        if rc != 0:
            status = "failed"
    except subprocess.TimeoutExpired:
        status, rc = "timeout", None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=10)
                break
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue
    pumper.join(timeout=5)
    record: dict[str, Any] = {"status": status, "exit_code": rc, "seconds": time.perf_counter() - t0,
                              "budget_seconds": budget}
    if part_json.is_file():
        try:
            record["result"] = json.loads(part_json.read_text())
        except json.JSONDecodeError as exc:
            record["result_error"] = str(exc)
    if status != "ok":
        errors = [ln.strip() for ln in tail if re.match(r"^[\w.]*(Error|Exception)\b", ln.strip())]
        record["error"] = errors[-1] if errors else ("killed at its time budget" if status == "timeout"
                                                     else "".join(tail[-3:]).strip()[-300:])
    return record


def orchestrate(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run every selected part under its budget and write JSON + Markdown after each one."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"gpu_check{suffix}" for k, suffix in (("json", ".json"), ("md", ".md"), ("log", ".log"),
                                                               ("junit", "-tests.xml"))}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.force:
        print(f"error: {existing[0]} already exists: pass --force to overwrite, or give another --out", file=sys.stderr)
        raise SystemExit(2)
    budgets = dict(BUDGETS["dry" if args.dry_run else "gpu"])
    for item in filter(None, (args.budgets or "").split(",")):
        k, _, v = item.partition("=")
        budgets[k.strip()] = float(v)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"error: unknown part {unknown[0]!r}: choose from {', '.join(PARTS)}", file=sys.stderr)
        raise SystemExit(2)
    data = Path(args.data) if args.data else SLICE
    started = _dt.datetime.now(_dt.timezone.utc)
    t_start = time.time()
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    if args.dry_run:  # a tiny slice with the same layout and the same disjointness
        data = tiny_slice(data, work / "cifar10_tiny.npz")
    args.data = str(data) if data.is_file() else None
    res: dict[str, Any] = {"format": FORMAT, "format_version": 1, "date": f"{started:%Y-%m-%d}",
                           "started_utc": started.isoformat(timespec="seconds"), "command": command,
                           "dry_run": args.dry_run, "budgets_seconds": budgets, "data": args.data,
                           "load_average_start": list(os.getloadavg()), **_environment(args.device), "parts": {}}

    def write() -> None:
        res["seconds"] = time.time() - t_start
        res["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        _write_text(paths["json"], json.dumps(_json_safe(res), indent=1) + "\n")
        _write_text(paths["md"], render_markdown(res))

    print(f"gpu check on {res.get('device_kind')} ({'dry run' if args.dry_run else 'full'}), parts {parts}, "
          f"results in {out}", flush=True)
    write()
    with open(paths["log"], "w") as log_file:
        for name in PARTS:
            if name not in parts:
                continue
            left = budgets["total"] - (time.time() - t_start)
            budget = min(budgets[name], left)
            if budget < (MIN_PRUNE_S if name == "prune" else 10):
                res["parts"][name] = {"status": "skipped", "reason": f"only {left:.0f} s of the total budget left"}
                write()
                continue
            log_file.write(f"==== part {name} (budget {budget:.0f} s)\n")
            print(f"==== part {name} (budget {budget:.0f} s)", flush=True)
            res["parts"][name] = _run_part(name, args, work, budget, log_file, paths["junit"])
            print(f"==== part {name}: {res['parts'][name]['status']} in {res['parts'][name]['seconds']:.0f} s",
                  flush=True)
            write()
    res["load_average_end"] = list(os.getloadavg())
    write()
    print(f"wrote {paths['json']}, {paths['md']}, {paths['log']}", flush=True)
    return res


# ================================================================ report
def _n(v: Any, sig: int = 3) -> str:
    try:
        from exporters.bench_report import fmt_sig

        return fmt_sig(v, sig)
    except ImportError:
        return str(v)


def _ms(seconds: Any) -> str:
    return _n(seconds * 1e3) if isinstance(seconds, (int, float)) else "-"


def _why(part: dict | None, default: str | None = "not run") -> str | None:
    """Why a part or step has no result: its error, else the reason it was skipped, else `default`."""
    part = part or {}
    return part.get("error") or part.get("skipped") or default


def _section_tests(r: dict) -> list[str]:
    j = r.get("junit")
    if not j:
        return [f"no JUnit report (exit code {r.get('exit_code')})", "", "```", r.get("output_tail", "")[-1500:], "```"]
    c = j["counts"]
    lines = [f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped "
             f"(pytest exit code {r.get('exit_code')}; files: {', '.join(r.get('files', []))})", "",
             "| test | outcome | s | message |", "|---|---|---:|---|"]
    lines += [f"| `{t['test']}` | {t['outcome']} | {t['seconds']:.1f} | {t['message'].replace('|', '/')} |"
              for t in j["tests"]]
    return lines


def _section_train(r: dict) -> list[str]:
    s = r.get("settings", {})
    lines = [f"{s.get('model')} ({s.get('workload')}), {s.get('data')}; batch {s.get('batch')}, {s.get('warmup')} warm-up + "
             f"{s.get('steps')} timed steps per mode, modes interleaved; `torch.compile` backend "
             f"{s.get('compile_backend')} (compile time falls in the warm-up)", "",
             "| variant | mode | images/s | median ms/step | ratio to standard | speedup vs fp32 eager |",
             "|---|---|---:|---:|---:|---:|"]
    for name, *_ in TRAIN_VARIANTS:
        v = r.get(name)
        if not v or "modes" not in v:
            lines.append(f"| {name} | - | {_why(v)} | | | |")
            continue
        sp = r.get("speedup_vs_fp32_eager", {}).get(name, {})
        for m in v["modes"]:
            lines.append(f"| {name} | {m['mode']} | {_n(m['images_per_s'])} | {_ms(m['median_s_per_step'])} | "
                         f"{m['ratio_to_standard']:.2f} | {_n(sp.get(m['mode']))} |")
    return lines


def _section_attack(r: dict) -> list[str]:
    s = r.get("settings", {})
    lines = [f"PGD-20, eps {s.get('eps', 0):.4g}, step {s.get('alpha', 0):.4g}, random start, CE; batch {s.get('batch')}; "
             f"{s.get('timed_rounds')} interleaved rounds after {s.get('warmup_rounds')}", ""]
    p = r.get("pgd20_throughput", {})
    if "implementations" in p:
        lines += ["| implementation | images/s | median s | max L-inf |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {_n(v['images_per_s'])} | {_n(v['median_s'])} | {v['max_linf']:.4f} |"
                  for k, v in p["implementations"].items()]
        lines += ["", f"ours / reference speed: {p['speedup_ours_vs_reference']:.2f}x ({p['model']})"]
    else:
        lines.append(f"PGD throughput: {_why(p)}")
    m, st, aa = r.get("robust_model", {}), r.get("pgd20_strength", {}), r.get("autoattack", {})
    lines += ["", f"robust model: {m.get('training') or _why(m)}"]
    if "ours" in st:
        lines.append(f"- equal strength on {st['n']} held-out images: clean {st['clean']:.3f}, PGD-20 ours "
                     f"{st['ours']:.3f}, reference loop {st['reference loop']:.3f}")
    if "images_per_s" in aa:
        lines.append(f"- AutoAttack standard on {aa['n']} images: {_n(aa['images_per_s'])} images/s "
                     f"({aa['seconds_attack']:.1f} s; clean {aa['clean']:.3f}, robust {aa['robust_accuracy']:.3f})")
    else:
        lines.append(f"- AutoAttack: {_why(aa)}")
    return lines


def _section_deploy(r: dict) -> list[str]:
    s = r.get("settings", {})
    lines = [f"{s.get('arch')} on 3x32x32, {s.get('precision')}, {s.get('timing')}; channels-50 = half the channels "
             "removed by Torch-Pruning (`structural.build`)", ""]
    for key in ("dense", "channels-50"):
        m = r.get(f"model:{key}", {})
        if "params" in m:
            lines.append(f"- {key}: {m['params']:,} parameters, {m['macs']:,} MACs per image")
        a = r.get(f"aoti:{key}", {})
        if a:
            lines.append(f"- {key} AOTInductor: " + (f"compiled in {a['compile_seconds']:.0f} s, max |delta logit| "
                                                     f"{a['max_abs_diff']:.1e}" if "compile_seconds" in a else
                                                     str(a.get("skipped") or a.get("error"))))
    lines += ["", "| model | runtime | batch | p50 ms | p90 ms | p99 ms | images/s |", "|---|---|---:|---:|---:|---:|---:|"]
    for k, v in r.items():
        if k.startswith("latency:"):
            _, model, runtime, b = k.split(":")
            if "p50" in v:
                lines.append(f"| {model} | {runtime} | {b[1:]} | {_ms(v['p50'])} | {_ms(v['p90'])} | {_ms(v['p99'])} | "
                             f"{_n(v['throughput'])} |")
            else:
                lines.append(f"| {model} | {runtime} | {b[1:]} | {_why(v, None)} | | | |")
    ss = r.get("semi_structured", {})
    lines += ["", "2:4 semi-structured (`to_sparse_semi_structured`) vs dense, per layer (`F.linear`, CUDA events):", "",
              "| workload | layer | shape | precision | rows | dense ms | 2:4 ms | speedup | kernel / note |",
              "|---|---|---|---|---:|---:|---:|---:|---|"]
    for w, e in ss.get("workloads", {}).items():
        for row in e["runs"]:
            if "speedup" in row:
                lines.append(f"| {w} | {row['layer']} | {row['shape']} | {row['precision']} | {row['batch_size']} | "
                             f"{_ms(row['dense_p50'])} | {_ms(row['sparse_p50'])} | {row['speedup']:.2f} | "
                             f"{row.get('kernel', '')} |")
            else:
                lines.append(f"| {w} | {row.get('layer', '-')} | {row.get('shape', '-')} | {row.get('precision')} | "
                             f"{row.get('batch_size')} | | | | {row.get('unsupported') or row.get('error')} |")
    for key in ("error", "unsupported", "skipped"):
        if key in ss:
            lines.append(f"2:4: {ss[key]}")
    return lines


def _section_prune(r: dict) -> list[str]:
    if "skipped" in r and isinstance(r["skipped"], str):
        return [f"skipped: {r['skipped']}"]
    d, plan = r.get("data", {}), r.get("plan", {})
    lines = [f"data: {d.get('split')}; splits {d.get('splits')}",
             f"plan (from a timed pilot, {_n(plan.get('pilot_epoch_seconds'))} s/epoch): {plan.get('arch')}, dense "
             f"{plan.get('dense')}; each method {plan.get('epochs_prune')} prune + {plan.get('epochs_finetune')} "
             f"fine-tune epochs at sparsity {plan.get('sparsity')}; {plan.get('evaluation')}", "",
             "| model | objective | weight sparsity | clean | PGD-20 | train s |", "|---|---|---:|---:|---:|---:|"]
    for key in ("dense", "prune:magnitude", "prune:tscnc"):
        v = r.get(key)
        if not v:
            continue
        if "clean" in v:
            lines.append(f"| {key.removeprefix('prune:')} | {v.get('adv', 'pgd')} | {v.get('weight_sparsity', 0):.3f} | "
                         f"{v['clean']:.3f} | {v['pgd20']:.3f} | {v['train_seconds']:.0f} |")
        else:
            lines.append(f"| {key} | {_why(v, None)} | | | | |")
    return lines


SECTIONS = {"tests": ("1. CUDA tests of the suite", _section_tests),
            "train": ("2. Training throughput", _section_train),
            "attack": ("3. Attack throughput", _section_attack),
            "deploy": ("4. Deployment latency", _section_deploy),
            "prune": ("5. Robust pruning on CIFAR-10 (short)", _section_prune)}


def render_markdown(res: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    m = res.get("machine", {})
    g = m.get("gpu", {})
    lines = [f"# GPU check ({res.get('device_kind')}, {res['date']}){' -- DRY RUN (CPU, tiny sizes)' if res['dry_run'] else ''}",
             "", f"- date (UTC): {res['started_utc']} to {res.get('finished_utc', '-')}, {res.get('seconds', 0):.0f} s",
             f"- command: `{res['command']}`",
             f"- machine: {m.get('cpu_model')}, {m.get('cpu_count')} cores"]
    if g:
        lines.append(f"- GPU: {g['name']} ({g['memory_gib']} GiB, capability {g['capability']}), driver {g['driver']}, "
                     f"CUDA {g['cuda_runtime']}, cuDNN {g['cudnn']}")
    if res.get("nvidia_smi"):
        lines.append(f"- nvidia-smi: {res['nvidia_smi']}")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in res.get("versions", {}).items()))
    if res.get("compressor_import_error"):
        lines.append(f"- **compressor not importable**: {res['compressor_import_error']}")
    lines.append("- budgets (s, hard caps per part): " + ", ".join(f"{k} {v:.0f}" for k, v in res["budgets_seconds"].items()))
    lines += ["", "| part | status | seconds | budget | note |", "|---|---|---:|---:|---|"]
    for name, rec in res["parts"].items():
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', 0):.0f} | {rec.get('budget_seconds', 0):.0f} | "
                     f"{(rec.get('error') or rec.get('reason') or '').replace('|', '/')[:200]} |")
    for name, rec in res["parts"].items():
        title, section = SECTIONS[name]
        lines += ["", f"## {title}", ""]
        if "result" not in rec:
            lines.append(f"{rec['status']}: {rec.get('error') or rec.get('reason') or 'no result'}")
            continue
        try:
            lines += section(rec["result"])
        except Exception as exc:  # a partial result must not stop the page
            lines.append(f"(could not render this part's partial result: {_error_line(exc)}; see gpu_check.json)")
    return "\n".join(lines) + "\n"


# ================================================================ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default: $OUT)")
    p.add_argument("--dry-run", action="store_true", help="the same script on the CPU with tiny sizes (seconds)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    p.add_argument("--budgets", default="", help="override time caps, e.g. 'train=200,total=600' (seconds)")
    p.add_argument("--data", default=None, help=f"the CIFAR-10 slice (default {SLICE.relative_to(REPO)})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--force", action="store_true", help="overwrite existing results in --out")
    p.add_argument("--make-slice", nargs=2, metavar=("SRC", "DST"), help="write the CIFAR-10 slice and exit")
    # internal: one part in its own process
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    p.add_argument("--part-json", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--junit", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: orchestrate the parts (or run one part, or write the slice)."""
    args = build_parser().parse_args(argv)
    if args.make_slice:
        src, dst = map(Path, args.make_slice)
        if not src.is_file():
            print(f"error: no CIFAR-10 test set at {src}: give the path of cifar10_test.npz", file=sys.stderr)
            return 2
        print(json.dumps(make_slice(src, dst)))
        return 0
    if args.part:
        return run_part(args)
    if not args.out:
        print("error: no results folder: pass --out DIR (or set $OUT)", file=sys.stderr)
        return 2
    command = shlex.join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    res = orchestrate(args, command)
    return 0 if all(p["status"] in ("ok", "skipped") for p in res["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
