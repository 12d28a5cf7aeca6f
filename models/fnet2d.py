"""2D FNet (WaveMix paper, section 4.2): Fourier token mixing over height, width and channels.

FNet mixes a 1D sequence with a parameter-free Fourier transform; the paper's 2D version takes a
2D FFT over H and W, then a 1D FFT across channels, keeps the real part, and follows it with a
feed-forward of 1x1 convolutions with 2D batch normalisation, a residual across the block. The
block replaces the WaveMix block inside the WaveMix skeleton (same stem and head).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from ._registry import register_model
# The registry lists models by family module (_registry.FAMILY_MODULES), whatever the import order.
from .wavemix import SKELETON_SIZES, WaveMixSkeleton


class FNet2DBlock(nn.Module):
    """x + FF(Re(FFT_C(FFT_HW(x)))) on (B, dim, s, s); any s.

    FF = BatchNorm2d(dim), 1x1 conv dim -> mlp_mult*dim, GELU, dropout, 1x1 conv back to dim.
    The batch norm directly after the transform makes the block blind to a constant scale of
    it, so the orthonormal FFT used here equals FNet's unnormalised one up to BatchNorm's eps,
    while keeping values near the input's scale instead of growing with H*W*C.
    """

    def __init__(self, *, dim: int, mlp_mult: int = 2, dropout: float = 0.5):
        super().__init__()
        self.ff = nn.Sequential(nn.BatchNorm2d(dim), nn.Conv2d(dim, mlp_mult * dim, 1),
                                nn.GELU(), nn.Dropout(dropout),
                                nn.Conv2d(mlp_mult * dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 even under autocast: cuFFT's half precision only takes power-of-two sizes.
        mixed = torch.fft.fftn(x.float(), dim=(1, 2, 3), norm="ortho").real.to(x.dtype)
        return x + self.ff(mixed)


@dataclass(frozen=True)
class FNet2DConfig:
    """A 2D FNet variant: `dim` channels, `depth` blocks, feed-forward width `mlp_mult` x dim."""

    dim: int
    depth: int
    mlp_mult: int = 2  # the WaveMix MLP's multiplier; the paper gives none for FNet
    dropout: float = 0.5  # section 4.3: 0.5 across all models


def build_fnet2d(config: FNet2DConfig, *, num_classes: int, image_size: int) -> nn.Module:
    """A 2D FNet in the WaveMix skeleton for `num_classes` classes and `image_size`-px inputs."""
    blocks = [FNet2DBlock(dim=config.dim, mlp_mult=config.mlp_mult, dropout=config.dropout)
              for _ in range(config.depth)]
    return WaveMixSkeleton(dim=config.dim, num_classes=num_classes, image_size=image_size,
                           blocks=blocks, dropout=config.dropout)


@register_model("2D FNet-64/5", family="token mixer", sizes=SKELETON_SIZES,
                aliases=("FNet-64/5", "FNet2D-64/5"),
                params_note=("Table 1 gives 0.10M; with the feed-forward width 2 x dim (the "
                             "multiplier WaveMix uses, and the one that matches 2D FNet-128/5 "
                             "within 3%) ours is 109,412 (1.094x). No single width fits both "
                             "FNet sizes within 3%, so we keep one rule for both."))
def fnet2d_64_5(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """2D FNet-64/5: dim 64, depth 5, feed-forward 64 -> 128 -> 64.

    Parameters (100 classes, any size): paper Table 1 0.10M, ours 109,412 (1.094x). The paper
    gives no feed-forward width; 2 x dim is WaveMix's MLP multiplier and puts 2D FNet-128/5
    within 3% of Table 1. Matching 0.10M here would need about 1.75 x dim, and the same width
    rule cannot match both sizes, so the 9% excess is documented rather than tuned away.
    """
    return build_fnet2d(replace(FNet2DConfig(dim=64, depth=5), **options),
                        num_classes=num_classes, image_size=image_size)


@register_model("2D FNet-128/5", family="token mixer", sizes=SKELETON_SIZES,
                aliases=("FNet-128/5", "FNet2D-128/5"))
def fnet2d_128_5(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """2D FNet-128/5: dim 128, depth 5, feed-forward 128 -> 256 -> 128.

    Parameters (100 classes, any size): 419,428, Table 1 0.41M (1.023x).
    """
    return build_fnet2d(replace(FNet2DConfig(dim=128, depth=5), **options),
                        num_classes=num_classes, image_size=image_size)
