"""What a measurement ran on: CPU and GPU model, driver, threads, load, for benchmark records."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import CompressorError

BUSY_LOAD = 0.5  # a 1-minute load average above this fraction of the cores makes CPU timings noisy


@contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` (None: left as it is) and restored afterwards."""
    if threads is not None and threads < 1:
        raise CompressorError(f"`threads` must be >= 1, got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_model() -> str:
    """The CPU's marketing name (``model name`` in /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver() -> str | None:
    """The NVIDIA driver version, from NVML or nvidia-smi; None without one."""
    try:
        import pynvml  # type: ignore

        pynvml.nvmlInit()
        ver = pynvml.nvmlSystemGetDriverVersion()
        return ver.decode() if isinstance(ver, bytes) else str(ver)
    except Exception:
        pass
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout.strip().splitlines()[0]
    except Exception:
        pass
    return None


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """CPU model, cores, torch threads and, on CUDA, the GPU's name, driver and memory."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": torch.cuda.get_device_name(device),
            "driver": gpu_driver(),
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
        }
    return info


def device_kind(device: torch.device | str) -> str:
    """``cpu``, or ``cuda-<gpu name>`` (lower case, dashes) so that results of different GPUs do not collide."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    slug = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")
    return f"cuda-{slug}" if slug else "cuda"


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (empty where the platform has none)."""
    try:
        return list(os.getloadavg())
    except (OSError, AttributeError):
        return []


def is_busy(load: list[float] | None = None) -> bool:
    """Whether the 1-minute load average says other work competes for the CPU cores."""
    load = load_average() if load is None else load
    return bool(load) and load[0] > BUSY_LOAD * (os.cpu_count() or 1)
