"""What every benchmark script shares: the import path, result file names, and the command-line wrapper."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

try:
    import compressor  # noqa: F401
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(HERE.parent))

from compressor.environment import pinned_threads  # noqa: E402
from compressor.errors import CompressorError  # noqa: E402
from compressor.io import check_output  # noqa: E402
from compressor.training import pick_device  # noqa: E402


def result_paths(out: str | Path, stem: str, force: bool) -> tuple[Path, Path]:
    """The ``.json`` and ``.md`` result files for `stem` in `out`; existing ones are kept unless `force`."""
    return check_output(Path(out) / f"{stem}.json", force), check_output(Path(out) / f"{stem}.md", force)


def run_main(script: str, build_parser: Callable[[], argparse.ArgumentParser],
             run: Callable[[argparse.Namespace, str], Any], argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, call ``run(args, command)``; a CompressorError becomes one line and exit status 2.

    ``command`` is the shell command that re-runs the benchmark (or a note that it was called as a function).
    """
    if argv is None:
        argv = sys.argv[1:]
        command = shlex.join(["python", f"benchmarks/{script}.py", *argv])
    else:
        argv = list(argv)
        command = f"{script}.main: " + shlex.join(argv)  # called as a function, not from a shell
    args = build_parser().parse_args(argv)
    try:
        run(args, command)
    except CompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def markdown_header(title: str, res: dict[str, Any]) -> list[str]:
    """The first lines of every results page: title, date, command, machine, GPU, versions and load."""
    m = res["machine"]
    lines = [f"# {title}", "", f"- date (UTC): {res['started_utc']}", f"- command: `{res['command']}`",
             f"- machine: {m['cpu_model']}, {m['cpu_count']} cores (affinity {m.get('cpu_affinity')}), "
             f"torch threads {m['torch_threads']}"]
    if "gpu" in m:
        g = m["gpu"]
        lines.append(f"- GPU: {g['name']} ({g['memory_gib']} GiB, capability {g['capability']}), driver {g['driver']}, "
                     f"CUDA {g['cuda_runtime']}, cuDNN {g['cudnn']}")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
    load = "- load average (1, 5, 15 min) at start: " + ", ".join(f"{v:.2f}" for v in res["load_average_start"])
    if "load_average_end" in res:
        load += "; at end: " + ", ".join(f"{v:.2f}" for v in res["load_average_end"])
    if "busy_at_start" in res:
        load += " -- **busy at start: CPU timings noisy**" if res["busy_at_start"] else " (quiet at start)"
    return lines + [load]


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether the code the rows ran (compressor/, pruners/, benchmarks/) had local edits."""
    import subprocess

    root = HERE.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "compressor", "pruners", "benchmarks"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty_files": [d[3:] for d in dirty if d.strip()]}


def write_results(res: dict[str, Any], json_path: Path, md_path: Path, render: Callable[[dict[str, Any]], str],
                  log: Callable[[str], None]) -> None:
    """Stamp the end (load, time) on `res` and write it as JSON and as the Markdown `render` makes of it."""
    import datetime as _dt

    from compressor.environment import load_average
    from compressor.io import atomic_write_text
    from compressor.reporting import to_json

    res["load_average_end"] = load_average()
    res["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(json_path, to_json(res) + "\n")
    atomic_write_text(md_path, render(res))
    log(f"wrote {json_path} and {md_path}")


def resolve_device(name: str):
    """``cpu``, ``cuda[:N]`` or ``auto`` (CUDA when there is a GPU) as a torch device (the library's `pick_device`)."""
    return pick_device(name)


@contextmanager
def measuring(device, threads: int | None) -> Iterator[None]:
    """Torch threads set to `threads` (when given) and the RNG forked, so a calling process is left as it was."""
    import torch

    with pinned_threads(threads), torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        yield


def sync(device) -> None:
    """Wait for the work queued on a CUDA `device` (nothing to wait for on the CPU), so a host clock can time it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(calls: dict[str, Callable[[], Any]], warmup: int, reps: int, device,
                      log: Callable[[str], None], label: str) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time each call `reps` times after `warmup` rounds, round-robin with a rotating order; keep the last outputs."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    last: dict[str, Any] = {}
    order = list(calls)
    for i in range(warmup + reps):
        k = i % len(order)
        for name in order[k:] + order[:k]:
            sync(device)
            t0 = time.perf_counter()
            last[name] = calls[name]()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
        if i >= warmup:
            log(f"  [{label}] round {i - warmup + 1}/{reps}: " + ", ".join(
                f"{n} {times[n][-1]:.3f}s" for n in order))
    return times, last


def time_stats(t: Sequence[float], images: int) -> dict[str, Any]:
    """Median, p90 and min seconds per call of the timings `t`, and images per second at the median."""
    median = float(np.median(t))
    return {"median_s": median, "p90_s": float(np.percentile(t, 90)), "min_s": float(np.min(t)),
            "images_per_s": images / median, "times_s": list(t)}


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """The median over rounds of num[i] / den[i]: each round ran both back to back, so load drifts cancel."""
    return float(np.median(np.asarray(num) / np.asarray(den)))


def accuracy_on(model, x_adv, y) -> float:
    """Accuracy of `model` on the (adversarial) images `x_adv`."""
    import torch

    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()
