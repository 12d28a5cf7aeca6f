"""Parts shared by the zoo's transformers (ViT, Hybrid ViN, CCT, CvT): attention, feed-forward,
a pre-norm encoder, and the token-grid size rule of section 4.3.

Tensors are (batch, tokens, dim) unless a docstring says otherwise. Every attention module takes
`attention="eager"` (the paper's explicit softmax(q k^T / sqrt(d)) v, materialising the
tokens x tokens weights, the default) or `attention="sdpa"`
(torch.nn.functional.scaled_dot_product_attention, which may pick a fused kernel that never
materialises them). Both compute the same function; they differ in memory and speed, which is
what the profiler measures.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ._registry import SizeRule

ATTENTION_KINDS = ("eager", "sdpa")

# Section 4.3: patch size 1 at 32 px ("every pixel is a token"); larger inputs take
# patches of size // 32 pixels so the grid stays 32x32 (the 64 px runs "essentially reshape the
# 64x64 image to 32x32"). Below 8 px the smallest models' strided convolutions run out of map.
MIN_IMAGE_SIZE = 8
TOKEN_GRID = 32


def check_attention(attention: str) -> str:
    """Return `attention` if it names a known implementation, else raise ValueError."""
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
    return attention


def token_patch(image_size: int) -> int:
    """Pixels per token side for a square `image_size`-px input: max(1, image_size // 32)."""
    return max(1, image_size // TOKEN_GRID)


def _fits_token_grid(image_size: int) -> bool:
    return image_size >= MIN_IMAGE_SIZE and image_size % token_patch(image_size) == 0


TOKEN_GRID_SIZES = SizeRule(
    _fits_token_grid,
    f"sizes of at least {MIN_IMAGE_SIZE} px divisible by max(1, size // {TOKEN_GRID}), the "
    "pixels per token (e.g. 28, 32, 64, 96, 224, 256; not 100), so the token grid stays "
    f"about {TOKEN_GRID}x{TOKEN_GRID}",
    adapts=f"patch size // {TOKEN_GRID} px: keeps a {TOKEN_GRID}×{TOKEN_GRID} token grid")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, attention: str,
           scale: float, dropout: float = 0.0) -> torch.Tensor:
    """softmax(q @ k^T * scale) @ v over the last two dims: (..., i, d), (..., j, d), (..., j, e).

    `dropout` is the probability applied to the attention weights (pass 0 outside training).
    """
    if attention == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale)
    weights = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)
    return F.dropout(weights, dropout) @ v if dropout else weights @ v


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention, (B, N, dim) -> (B, N, dim).

    q, k, v come from one bias-free linear map to 3 x heads x dim_head (as in vit-pytorch and
    CCT); the heads are merged by a linear map back to `dim`, followed by `dropout`.
    """

    def __init__(self, *, dim: int, heads: int, dim_head: int, attention: str = "eager",
                 dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        self.attention = check_attention(attention)
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.attention_dropout = attention_dropout
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.to_qkv(x), "b n (three h d) -> three b h n d",
                            three=3, h=self.heads)
        out = attend(q, k, v, attention=self.attention, scale=self.scale,
                     dropout=self.attention_dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    """Linear dim -> hidden, GELU, dropout, linear hidden -> dim, dropout; on (..., dim)."""

    def __init__(self, *, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNormEncoderLayer(nn.Module):
    """x + mixer(LN(x)), then + FeedForward(LN(.)); `mixer` maps (B, N, dim) to itself."""

    def __init__(self, *, dim: int, mixer: nn.Module, mlp_dim: int, dropout: float):
        super().__init__()
        self.mixer_norm = nn.LayerNorm(dim)
        self.mixer = mixer
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim=dim, hidden=mlp_dim, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.mixer_norm(x))
        return x + self.ff(self.ff_norm(x))


class PreNormEncoder(nn.Module):
    """`depth` pre-norm layers (vit-pytorch's Transformer); `make_mixer()` builds each layer's
    token mixer (self-attention for ViT, Nystrom attention for ViN). (B, N, dim) -> same."""

    def __init__(self, *, dim: int, depth: int, mlp_dim: int, dropout: float,
                 make_mixer: Callable[[], nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*(
            PreNormEncoderLayer(dim=dim, mixer=make_mixer(), mlp_dim=mlp_dim, dropout=dropout)
            for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
