"""A small Vision Transformer for CIFAR-scale inputs, written with explicit, prunable Linear layers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import MODELS
from .normalize import Normalize


class Attention(nn.Module):
    """Multi-head self-attention: one `qkv` Linear, scaled dot-product attention, output `proj` Linear."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (b, heads, n, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """`fc1` -> GELU -> `fc2`."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping `patch_size` patches embedded by a strided conv (`proj`), flattened to tokens."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (b, num_patches, embed_dim)


@dataclass(frozen=True)
class ViTShape:
    """The transformer's own dimensions: input side and patch size, width, depth, heads, MLP ratio, qkv bias."""

    img_size: int = 32
    patch_size: int = 4
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 2.0
    qkv_bias: bool = True


class VisionTransformer(nn.Module):
    """ViT: patch embedding, cls token, learned position embedding, `blocks`, final `norm`, `head`."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, shape: ViTShape | None = None, **shape_options: Any):
        super().__init__()
        # the shape may come as its fields (depth=2, ...), the keywords checkpoints record in their arch_kwargs; an
        # unknown one is a TypeError, as for any model's arguments (create_model reports it in one line)
        shape = dataclasses.replace(shape or ViTShape(), **shape_options)
        img_size, patch_size, embed_dim = shape.img_size, shape.patch_size, shape.embed_dim
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        self.normalize = Normalize(mean if mean is not None else [0.0] * in_chans,
                                   std if std is not None else [1.0] * in_chans)
        self.img_size = img_size
        self.patch_size = patch_size
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, shape.num_heads, shape.mlp_ratio, shape.qkv_bias)
                                      for _ in range(shape.depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if h != self.img_size or w != self.img_size:
            raise ValueError(f"this ViT was built for {self.img_size}x{self.img_size} inputs, got {h}x{w}: "
                             "pass img_size to build it for another size")
        tokens = self.patch_embed(self.normalize(x))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        tokens = self.norm(self.blocks(tokens))
        return self.head(tokens[:, 0])


@MODELS.register("vit_small_cifar")
def vit_small_cifar(**kwargs) -> VisionTransformer:
    """Small ViT for CIFAR (patch 4, dim 192, depth 6, 3 heads, MLP ratio 2)."""
    return VisionTransformer(**kwargs)
