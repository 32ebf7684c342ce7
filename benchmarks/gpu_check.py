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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # benchmarks/ is no package: its modules (none imports the library at import time)
    sys.path.insert(0, str(HERE))
from gpu_check_context import (REPO, SLICE, PartContext, error_line, json_safe, make_slice, tiny_slice,  # noqa: E402
                               write_text)
from gpu_check_deploy import part_deploy  # noqa: E402
from gpu_check_parts import part_attack, part_prune, part_tests, part_train  # noqa: E402
from gpu_check_report import render_markdown  # noqa: E402

FORMAT = "compressor.benchmark.gpu_check"
PARTS = ("tests", "train", "attack", "deploy", "prune")
# hard time caps per part (seconds); "prune" gets what is left of the total, at most its cap
BUDGETS = {"gpu": {"tests": 75, "train": 130, "attack": 75, "deploy": 130, "prune": 150, "total": 460},
           "dry": {"tests": 90, "train": 90, "attack": 90, "deploy": 90, "prune": 90, "total": 400}}
MIN_PRUNE_S = 30


def run_part(args: argparse.Namespace) -> int:
    """Entry point of a part's own process."""
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
            env["compressor_import_error"] = error_line(exc)
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
                env["nvidia_smi"] = error_line(exc)
    except Exception as exc:
        env["error"] = error_line(exc)
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
        write_text(paths["json"], json.dumps(json_safe(res), indent=1) + "\n")
        write_text(paths["md"], render_markdown(res))

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
