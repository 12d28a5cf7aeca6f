"""2D MLP-Mixer (WaveMix paper, section 4.2): MLPs along height, width and channels.

MLP-Mixer mixes an unrolled token sequence; the paper's 2D version keeps the image as a map and
applies one MLP along the height, one along the width (each after a layer norm) and one along
the channels (after a 2D batch norm), with a residual across the block. The block replaces the
WaveMix block inside the WaveMix skeleton (same stem and head).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn as nn
from einops import rearrange

from ._registry import register_model
# The registry lists models by family module (_registry.FAMILY_MODULES), whatever the import order.
from .wavemix import SKELETON_SIZES, WaveMixSkeleton, block_map_size


class AxisMLP(nn.Module):
    """LayerNorm then MLP (size -> mult*size -> size, GELU, dropout) along one spatial axis.

    Works on (B, C, H, W); `axis` is "height" or "width" and `size` that axis' length (pixels).
    The norm is over the same axis the MLP mixes: each row (or column) of a channel is the
    vector the MLP sees, as each token's feature vector is in MLP-Mixer.
    """

    def __init__(self, *, axis: Literal["height", "width"], size: int, mult: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        if axis not in ("height", "width"):
            raise ValueError(f"axis must be 'height' or 'width', got {axis!r}")
        self.axis = axis
        self.norm = nn.LayerNorm(size)
        self.mlp = nn.Sequential(nn.Linear(size, mult * size), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mult * size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis == "width":  # nn.Linear acts on the last axis, which is already W
            return self.mlp(self.norm(x))
        columns = rearrange(x, "b c h w -> b c w h")
        return rearrange(self.mlp(self.norm(columns)), "b c w h -> b c h w")


class MLPMixer2DBlock(nn.Module):
    """x + channel MLP(height MLP then width MLP of x) on (B, dim, s, s); built for one s.

    Channel MLP = BatchNorm2d(dim), 1x1 conv dim -> mlp_mult*dim, GELU, dropout, 1x1 conv back.
    The height and width MLPs have `map_size`-long inputs, so the block only takes s = map_size.
    """

    def __init__(self, *, dim: int, map_size: int, mlp_mult: int = 2, dropout: float = 0.5):
        super().__init__()
        self.height = AxisMLP(axis="height", size=map_size, mult=mlp_mult, dropout=dropout)
        self.width = AxisMLP(axis="width", size=map_size, mult=mlp_mult, dropout=dropout)
        self.channels = nn.Sequential(nn.BatchNorm2d(dim), nn.Conv2d(dim, mlp_mult * dim, 1),
                                      nn.GELU(), nn.Dropout(dropout),
                                      nn.Conv2d(mlp_mult * dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channels(self.width(self.height(x)))


@dataclass(frozen=True)
class MLPMixer2DConfig:
    """A 2D MLP-Mixer variant: `dim` channels, `depth` blocks, every MLP `mlp_mult` wide."""

    dim: int
    depth: int
    mlp_mult: int = 2  # the WaveMix MLP's multiplier; the paper gives none for MLP-Mixer
    dropout: float = 0.5  # section 4.3: 0.5 across all models


def build_mlpmixer2d(config: MLPMixer2DConfig, *, num_classes: int, image_size: int) -> nn.Module:
    """A 2D MLP-Mixer in the WaveMix skeleton for `num_classes` classes and `image_size` px."""
    map_size = block_map_size(image_size)
    blocks = [MLPMixer2DBlock(dim=config.dim, map_size=map_size, mlp_mult=config.mlp_mult,
                              dropout=config.dropout) for _ in range(config.depth)]
    return WaveMixSkeleton(dim=config.dim, num_classes=num_classes, image_size=image_size,
                           blocks=blocks, dropout=config.dropout)


@register_model("2D MLP-Mixer-64/5", family="token mixer", sizes=SKELETON_SIZES,
                aliases=("MLP-Mixer-64/5", "MLPMixer2D-64/5"))
def mlpmixer2d_64_5(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """2D MLP-Mixer-64/5: dim 64, depth 5, every MLP 2x wide.

    Parameters (100 classes, 32 px, so a 32x32 map): 151,972, Table 1 0.15M (1.013x). The
    height/width MLPs grow with the map: at 64, 128 or 256 px (a 64x64 map) the count is 276,452.
    """
    return build_mlpmixer2d(replace(MLPMixer2DConfig(dim=64, depth=5), **options),
                            num_classes=num_classes, image_size=image_size)


@register_model("2D MLP-Mixer-128/5", family="token mixer", sizes=SKELETON_SIZES,
                aliases=("MLP-Mixer-128/5", "MLPMixer2D-128/5"))
def mlpmixer2d_128_5(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """2D MLP-Mixer-128/5: dim 128, depth 5, every MLP 2x wide.

    Parameters (100 classes, 32 px, so a 32x32 map): 461,988, Table 1 0.45M (1.027x). At
    64, 128 or 256 px (a 64x64 map) the count is 586,468.
    """
    return build_mlpmixer2d(replace(MLPMixer2DConfig(dim=128, depth=5), **options),
                            num_classes=num_classes, image_size=image_size)
