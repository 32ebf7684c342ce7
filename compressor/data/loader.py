"""Batched, shuffled, optionally augmented iteration over in-memory splits, on any device."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .core import ArraySplit, to_unit_float


def random_crop_flip(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random crop (zero padding) and horizontal flip of a batch, without Python loops."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (padding, padding, padding, padding))
    off_y = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device="cpu").to(dev)
    off_x = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device="cpu").to(dev)
    flip = torch.rand(n, generator=generator, device="cpu").to(dev) < 0.5
    rows = (torch.arange(h, device=dev).view(1, h, 1) + off_y).expand(n, h, w)
    cols = torch.arange(w, device=dev).view(1, 1, w).expand(n, h, w)
    cols = torch.where(flip.view(n, 1, 1), w - 1 - cols, cols) + off_x
    batch_idx = torch.arange(n, device=dev).view(n, 1, 1).expand(n, h, w)
    # gather: out[n, c, i, j] = padded[n, c, rows[n, i, j], cols[n, i, j]]
    return padded.permute(0, 2, 3, 1)[batch_idx, rows, cols].permute(0, 3, 1, 2).contiguous()


class BatchLoader:
    """Yields (images in [0, 1], labels) batches; reshuffles each epoch from (seed, epoch), shards by rank."""

    def __init__(self, split: ArraySplit, batch_size: int, *, shuffle: bool = False, augment: str = "none",
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling order and augmentation of `epoch` (deterministic given the seed)."""
        self.epoch = epoch

    def _indices(self, gen: torch.Generator) -> torch.Tensor:
        n = len(self.split)
        idx = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.world_size > 1:  # equal shards, padded by wrapping around like DistributedSampler
            per_rank = -(-n // self.world_size)
            pad = per_rank * self.world_size - n  # may exceed n (tiny splits, many ranks): repeat as needed
            idx = torch.cat([idx, idx.repeat(-(-pad // n))[:pad]]) if n else idx
            idx = idx[self.rank::self.world_size]
        return idx

    def __len__(self) -> int:
        n = -(-len(self.split) // self.world_size)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        idx = self._indices(gen)
        pin = self.device.type == "cuda"
        for start in range(0, len(idx), self.batch_size):
            b = idx[start:start + self.batch_size]
            if self.drop_last and len(b) < self.batch_size:
                break
            x, y = self.split.x[b], self.split.y[b]
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            x = to_unit_float(x.to(self.device, non_blocking=pin))
            y = y.to(self.device, non_blocking=pin)
            if self.augment == "crop-flip":
                x = random_crop_flip(x, generator=gen)
            yield x, y
