"""The measuring parts of the GPU check (gpu_check.py), each run in its own process: the suite's CUDA tests,
training throughput, attack throughput and a short robust-pruning run (deployment: gpu_check_deploy.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpu_check_context import EPS, HERE, REPO, SLICE_TEST, SLICE_TRAIN, PartContext, load_slice


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
    """Independent reference implementation of L-inf PGD (uniform start, sign steps, clipped to the ball and [0, 1])."""
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
    from common import accuracy_on, interleaved_times, paired_ratio, time_stats
    from compressor.attacks import build_attack

    steps = 20
    ours = build_attack(f"pgd{steps}", EPS)
    alpha = ours.options["alpha"]
    batch, warmup, reps = (4, 1, 2) if ctx.dry else (256, 3, 10)
    ctx.save("settings", {"eps": EPS, "alpha": alpha, "steps": steps, "random_start": True, "loss": "ce (sum)",
                          "batch": batch, "warmup_rounds": warmup, "timed_rounds": reps,
                          "reference": "reference_pgd in benchmarks/gpu_check_parts.py (plain loop)"})

    def pgd_throughput() -> dict[str, Any]:
        model, x, y, about = at.random_cifar_model("resnet18", ctx.device, batch, 0)
        if ctx.dry:  # the same synthetic CIFAR-shaped images, a small model (seconds, not minutes, on a CPU)
            from compressor.models import create_model
            from train_throughput import CIFAR_MEAN, CIFAR_STD

            model = create_model("cnn-small", 10, 3, CIFAR_MEAN, CIFAR_STD).to(ctx.device).eval()
        calls = {"ours": lambda: ours(model, x, y), "reference loop": lambda: reference_pgd(model, x, y, EPS, alpha,
                                                                                             steps)}
        times, last = interleaved_times(calls, warmup, reps, ctx.device, ctx.log, "pgd20")
        rows = {k: time_stats(t, batch) for k, t in times.items()}
        for k in rows:
            rows[k]["max_linf"] = float((last[k] - x).abs().max())
        return {"model": f"{'cnn-small' if ctx.dry else 'resnet18'} (random weights), synthetic CIFAR-shaped images",
                "implementations": rows,
                "speedup_ours_vs_reference": paired_ratio(times["reference loop"], times["ours"])}

    ctx.guarded("pgd20_throughput", pgd_throughput, need_s=10 if not ctx.dry else 1)
    data = load_slice(ctx)
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
        out = {"n": len(y), "clean": accuracy_on(model, x, y),
               "ours": accuracy_on(model, ours(model, x, y), y),
               "reference loop": accuracy_on(model, reference_pgd(model, x, y, EPS, alpha, steps), y)}
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
        acc = accuracy_on(model, x_adv, ya)
        ctx.log(f"AutoAttack standard on {len(ya)} images: {dt:.1f} s, {len(ya) / dt:.1f} images/s, robust {acc:.3f}")
        return {"n": len(ya), "seconds_attack": dt, "images_per_s": len(ya) / dt,
                "clean": accuracy_on(model, xa, ya),
                "robust_accuracy": acc, "protocol": aa.protocol()}

    ctx.guarded("autoattack", autoattack, need_s=25 if not ctx.dry else 1)


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

    data = load_slice(ctx)
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
    pilot.start()
    pilot.begin_epoch()
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
