"""ViT (Dosovitskiy et al. 2021) as the WaveMix paper ran it: ViT-128/4x4, every pixel a token.

Notation Name-dim/layers x heads (section 4.1): dim 128, 4 pre-norm layers, 4 heads. The
authors built their transformers on vit-pytorch (section 4.3, footnote 3); their published ViT
script (github.com/pranavphoenix/VisionXformer, Models/ViT.py) fixes the open choices we copy:
dim_head 32, MLP width 256, a class token, learned positional embedding, LayerNorm + linear
head. Patch size 1 at 32 px (section 4.3); larger inputs use image_size // 32 px patches so the
sequence stays 32 x 32 = 1024 tokens (+ the class token).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from einops import rearrange, repeat

from ._attention import MultiHeadSelfAttention, PreNormEncoder, TOKEN_GRID_SIZES, token_patch
from ._registry import register_model


@dataclass(frozen=True)
class ViTConfig:
    """A ViT: width `dim`, `depth` layers of `heads` x `dim_head` attention, MLP `mlp_dim`."""

    dim: int = 128
    depth: int = 4
    heads: int = 4
    dim_head: int = 32  # the authors' script; vit-pytorch's default of 64 is not what they ran
    mlp_dim: int = 256
    # Section 4.3: "a dropout of 0.5 was used across all models"; applied where vit-pytorch's
    # `dropout` goes (feed-forward and attention output), not to the attention weights.
    dropout: float = 0.5
    attention: str = "eager"


class ViT(nn.Module):
    """Linear patch embedding, class token, positions, pre-norm encoder, class-token head.

    Input (B, 3, image_size, image_size) -> logits (B, num_classes); patches of
    :func:`token_patch` pixels a side.
    """

    def __init__(self, config: ViTConfig, *, num_classes: int, image_size: int):
        super().__init__()
        self.patch = token_patch(image_size)
        tokens = (image_size // self.patch) ** 2
        self.to_tokens = nn.Linear(3 * self.patch ** 2, config.dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens + 1, config.dim))
        self.encoder = PreNormEncoder(
            dim=config.dim, depth=config.depth, mlp_dim=config.mlp_dim, dropout=config.dropout,
            make_mixer=lambda: MultiHeadSelfAttention(
                dim=config.dim, heads=config.heads, dim_head=config.dim_head,
                attention=config.attention, dropout=config.dropout))
        self.head = nn.Sequential(nn.LayerNorm(config.dim), nn.Linear(config.dim, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)",
                            p1=self.patch, p2=self.patch)
        x = self.to_tokens(patches)
        x = torch.cat([repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0]), x], dim=1)
        x = self.encoder(x + self.pos_embedding)
        return self.head(x[:, 0])


TABLE1_NOTE = (
    "Table 1 gives 0.53M. With the authors' own ViT script (dim_head 32, MLP 256) ours is "
    "673,380 at 100 classes (1.27x). Table 1 matches that script counted as torchsummary does "
    "at 10 classes: torchsummary skips the class token and positional embedding (bare "
    "nn.Parameters, 131,328 here), giving 530,442 = 0.53M. Shrinking the MLP to 128 would hit "
    "0.53M with a model the authors did not run, so we keep their configuration.")


@register_model("ViT-128/4x4", family="transformer", sizes=TOKEN_GRID_SIZES,
                params_note=TABLE1_NOTE)
def vit_128_4x4(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """ViT-128/4x4: dim 128, 4 layers, 4 heads of 32, MLP 256, pixel tokens at 32 px.

    Options: any ViTConfig field, e.g. `attention="sdpa"`.

    Parameters (100 classes, 32 px): paper Table 1 0.53M, ours 673,380 (1.27x). Assumption: the
    authors' published ViT script. The gap is counting, not architecture: their count (10
    classes, torchsummary, which misses the 1025 x 128 positional embedding and the class token
    because they are bare nn.Parameters) is 530,442 for this very model; at 100 classes the head
    adds 11,610 and the embeddings 131,328.
    """
    return ViT(replace(ViTConfig(), **options), num_classes=num_classes, image_size=image_size)
