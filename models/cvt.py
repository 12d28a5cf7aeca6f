"""CvT, the Convolutional vision Transformer (Wu et al. 2021), as CvT-128/4x4.

CvT brings convolutions into the transformer twice: a convolutional token embedding (a strided
conv plus LayerNorm, replacing the linear patch embedding) and convolutional projections (q, k,
v each from a depth-wise conv, BatchNorm and a point-wise conv on the token map instead of a
linear map; k and v from a stride-2 conv, quartering the keys). Tokens stay a (B, dim, H, W) map
throughout, and there is no class token: the head averages the map.

CvT-128/4x4 (section 4.1 notation) is one CvT stage of width 128, 4 layers, 4 heads; the paper
gives nothing more, so the rest are vit-pytorch's CvT stage-1 defaults (the authors built on
vit-pytorch, section 4.3, footnote 3): 7x7 embedding conv, 3x3 projections, key/value stride 2,
dim_head 64, MLP ratio 4. Its stride is 1 at 32 px (every pixel a token, section 4.3) and
image_size // 32 above, so the map stays 32x32.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from einops import rearrange

from ._attention import TOKEN_GRID_SIZES, attend, check_attention, token_patch
from ._registry import register_model


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(super().forward(rearrange(x, "b c h w -> b h w c")), "b h w c -> b c h w")


def conv_projection(dim: int, out: int, *, kernel: int, stride: int) -> nn.Sequential:
    """CvT's projection: depth-wise conv (`kernel`, `stride`), BatchNorm, 1x1 conv to `out`."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel, stride=stride, padding=kernel // 2, groups=dim, bias=False),
        nn.BatchNorm2d(dim), nn.Conv2d(dim, out, 1, bias=False))


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional q/k/v projections, on (B, dim, H, W) maps.

    Keys and values come from a `kv_stride`-strided projection, so H x W queries attend to
    ceil(H / kv_stride) x ceil(W / kv_stride) keys. Output (B, dim, H, W), before the residual.
    """

    def __init__(self, *, dim: int, heads: int, dim_head: int, kernel: int, kv_stride: int,
                 attention: str = "eager", dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        self.attention = check_attention(attention)
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.attention_dropout = attention_dropout
        inner = heads * dim_head
        self.norm = ChannelLayerNorm(dim)
        self.to_q = conv_projection(dim, inner, kernel=kernel, stride=1)
        self.to_kv = conv_projection(dim, 2 * inner, kernel=kernel, stride=kv_stride)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1]
        x = self.norm(x)
        q = rearrange(self.to_q(x), "b (h d) x y -> b h (x y) d", h=self.heads)
        k, v = rearrange(self.to_kv(x), "b (two h d) x y -> two b h (x y) d", two=2, h=self.heads)
        out = attend(q, k, v, attention=self.attention, scale=self.scale,
                     dropout=self.attention_dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h (x y) d -> b (h d) x y", y=width))


class ConvFeedForward(nn.Module):
    """Channel LayerNorm, 1x1 conv dim -> hidden, GELU, dropout, 1x1 conv back, dropout."""

    def __init__(self, *, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(ChannelLayerNorm(dim), nn.Conv2d(dim, hidden, 1), nn.GELU(),
                                 nn.Dropout(dropout), nn.Conv2d(hidden, dim, 1),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CvTLayer(nn.Module):
    """x + ConvAttention(x), then + ConvFeedForward(.); each normalises its own input."""

    def __init__(self, *, attn: ConvAttention, ff: ConvFeedForward):
        super().__init__()
        self.attn, self.ff = attn, ff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ff(x)


@dataclass(frozen=True)
class CvTConfig:
    """One CvT stage: embedding conv, `depth` layers of `heads` x `dim_head` conv attention."""

    dim: int = 128
    depth: int = 4
    heads: int = 4
    dim_head: int = 64  # vit-pytorch's CvT default
    mlp_ratio: int = 4
    embed_kernel: int = 7  # vit-pytorch's stage-1 default (stride 4 there; here pixels/token)
    proj_kernel: int = 3
    kv_stride: int = 2
    # Section 4.3's 0.5, where vit-pytorch's CvT applies its single `dropout`: feed-forward,
    # attention output and the attention weights.
    dropout: float = 0.5
    attention_dropout: float = 0.5
    attention: str = "eager"


class CvT(nn.Module):
    """Conv token embedding + channel LayerNorm, CvT layers, global average pool, linear.

    Input (B, 3, image_size, image_size) -> logits (B, num_classes).
    """

    def __init__(self, config: CvTConfig, *, num_classes: int, image_size: int):
        super().__init__()
        c = config
        self.embed = nn.Sequential(
            nn.Conv2d(3, c.dim, c.embed_kernel, stride=token_patch(image_size),
                      padding=c.embed_kernel // 2),
            ChannelLayerNorm(c.dim))
        self.layers = nn.Sequential(*(
            CvTLayer(attn=ConvAttention(dim=c.dim, heads=c.heads, dim_head=c.dim_head,
                                        kernel=c.proj_kernel, kv_stride=c.kv_stride,
                                        attention=c.attention, dropout=c.dropout,
                                        attention_dropout=c.attention_dropout),
                     ff=ConvFeedForward(dim=c.dim, hidden=c.mlp_ratio * c.dim, dropout=c.dropout))
            for _ in range(c.depth)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c.dim, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.embed(images)))


@register_model("CvT-128/4x4", family="transformer", sizes=TOKEN_GRID_SIZES)
def cvt_128_4x4(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """CvT-128/4x4: one stage, 7x7 conv embedding, 4 layers of 4 heads of 64, MLP 512.

    Options: any CvTConfig field, e.g. `attention="sdpa"`.

    Parameters (100 classes, 32 px): 1,097,060, Table 1 1.10M (0.997x), with vit-pytorch's CvT
    stage defaults (the paper names only width, depth and heads).
    """
    return CvT(replace(CvTConfig(), **options), num_classes=num_classes, image_size=image_size)
