"""torchrun / DistributedDataParallel plumbing: NCCL on GPU, gloo on CPU, rank 0 does the I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import CompressorError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise CompressorError(f"unknown `device` '{device}': use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CompressorError(f"`device` {device}: no CUDA GPU is visible: use `device` cpu (or auto)")
        if dev.index is not None and dev.index >= count:
            raise CompressorError(f"`device` {device}: only {count} CUDA GPU(s) are visible (cuda:0..cuda:{count - 1})")
    elif dev.type != "cpu":
        raise CompressorError(f"`device` {device} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return DistContext(device=dev)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process)."""
    if ctx.distributed:
        t = t.clone()
        dist.all_reduce(t)
    return t


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
