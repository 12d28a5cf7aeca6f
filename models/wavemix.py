"""WaveMix (Jeevan & Sethi, section 3): convolutional stem, wavelet mixing blocks, pooled head.

The skeleton (section 3.1, Fig. 1a, stem strides from section 4.3) is shared with the 2D FNet and
2D MLP-Mixer baselines of section 4.2, which swap in their own block. Two WaveMix blocks:

* :class:`WaveMixBlock` (section 3.2) - multi-level Haar DWT, one MLP shared across levels,
  transposed convolutions back to full size, depth-wise conv; used by WaveMix-16/5, -32/5, -64/5.
* :class:`WaveMixLiteBlock` (section 3.3, Fig. 2) - one DWT level; used by WaveMix-128/7, -256/7.

Where the text leaves a choice open we follow the authors' public code (layer order, MLP width
2 x dim, transposed-conv kernels 2^j + 2 with stride 2^j, no activation between the two stem
convolutions). Every builder takes `dwt_backend` ("native" or "pytorch_wavelets", see dwt.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

import torch
import torch.nn as nn

from ._registry import SizeRule, register_model
from .dwt import DWTBackend, HaarDWT

# Section 4.3: inputs larger than 64 px are strided down to at most 64x64 before the blocks.
MAX_BLOCK_MAP = 64
# The multi-level block concatenates one dim/4-channel up-sampled map per level, so exactly four
# levels make the concatenation `dim` wide (section 3.2: "same number of channels as the input").
MULTILEVEL_LEVELS = 4


def stem_strides(image_size: int) -> tuple[int, int]:
    """Strides of the two stem convolutions for a square `image_size`-pixel input.

    Stride 1 for inputs up to 64 px, stride 2 in the first conv up to 128 px, 2 in both up to
    256 px (section 4.3), and beyond that the first conv takes the remaining power of two, so the
    map entering the blocks is always at most 64x64.
    """
    factor = 1
    while math.ceil(image_size / factor) > MAX_BLOCK_MAP:
        factor *= 2
    return (factor, 1) if factor <= 2 else (factor // 2, 2)


def block_map_size(image_size: int) -> int:
    """Side (pixels) of the feature map the blocks see: the stem output for `image_size` px."""
    first, second = stem_strides(image_size)
    # A 3x3 conv with padding 1 and stride s maps n pixels to ceil(n / s).
    return math.ceil(math.ceil(image_size / first) / second)


class Stem(nn.Module):
    """Two 3x3 convolutions raising channels 3 -> dim/2 -> dim (section 4.3)."""

    def __init__(self, *, dim: int, image_size: int):
        super().__init__()
        first, second = stem_strides(image_size)
        # No activation between them: the authors' code has none, and the paper gives none.
        self.layers = nn.Sequential(nn.Conv2d(3, dim // 2, 3, stride=first, padding=1),
                                    nn.Conv2d(dim // 2, dim, 3, stride=second, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class WaveMixSkeleton(nn.Module):
    """Stem, a stack of residual blocks, then global average pool, dropout and a linear classifier.

    Each block maps (B, dim, s, s) to the same shape and carries its own residual connection;
    s = :func:`block_map_size`. Input (B, 3, image_size, image_size) -> logits (B, num_classes).
    """

    def __init__(self, *, dim: int, num_classes: int, image_size: int,
                 blocks: Iterable[nn.Module], dropout: float = 0.5):
        super().__init__()
        self.stem = Stem(dim=dim, image_size=image_size)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(dim, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(images)))


def channel_mlp(*, dim: int, mult: int, dropout: float) -> nn.Sequential:
    """The WaveMix MLP: 1x1 conv dim -> mult*dim, GELU, dropout, 1x1 conv back to dim."""
    return nn.Sequential(nn.Conv2d(dim, mult * dim, 1), nn.GELU(), nn.Dropout(dropout),
                         nn.Conv2d(mult * dim, dim, 1))


def multilevel_levels(map_size: int) -> int:
    """DWT levels of the multi-level block on a `map_size` x `map_size` map.

    The paper decomposes "till the input size is reduced to 2x2": 4 levels for a 32x32 map. A
    64x64 map would need 5, but a fifth dim/4-wide level would make the concatenation 5/4 dim,
    so we cap at 4 levels (the authors' code also stops at 4): the coarsest level of a 64x64 map
    is 4x4, and its k=18, s=16 up-convolution still spreads each coefficient across 18x18 px.
    Raises ValueError unless the map is a power of two of at least 32.
    """
    if map_size < 2 ** (MULTILEVEL_LEVELS + 1) or map_size & (map_size - 1):
        raise ValueError(f"the multi-level WaveMix block needs a power-of-two map of at least "
                         f"{2 ** (MULTILEVEL_LEVELS + 1)} px, got {map_size}")
    return MULTILEVEL_LEVELS


class WaveMixBlock(nn.Module):
    """Multi-level WaveMix block (section 3.2, Fig. 1b); (B, dim, s, s) -> (B, dim, s, s).

    1x1 conv dim -> dim/4; a 4-level Haar DWT (each level 4 * dim/4 = dim channels at s/2^j);
    one MLP shared by all levels; level j up-sampled by ConvTranspose2d(dim, dim/4, kernel
    2^j + 2, stride 2^j, padding 1) back to s x s; the four dim/4-wide maps concatenated (dim
    channels); depth-wise 5x5 conv, GELU, BatchNorm; residual add. `map_size` is s, which must be
    a power of two >= 32 (see :func:`multilevel_levels` for how 64x64 maps are handled).
    """

    def __init__(self, *, dim: int, map_size: int, mlp_mult: int = 2, dropout: float = 0.5,
                 dwt_backend: DWTBackend = "native"):
        super().__init__()
        if dim % 4:
            raise ValueError(f"WaveMix needs an embedding dimension divisible by 4, got {dim}")
        levels = multilevel_levels(map_size)
        self.reduce = nn.Conv2d(dim, dim // 4, 1)
        self.dwt = HaarDWT(levels=levels, backend=dwt_backend)
        self.mlp = channel_mlp(dim=dim, mult=mlp_mult, dropout=dropout)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(dim, dim // 4, 2 ** j + 2, stride=2 ** j, padding=1)
            for j in range(1, levels + 1))
        self.mix = nn.Sequential(nn.Conv2d(dim, dim, 5, padding=2, groups=dim), nn.GELU(),
                                 nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.dwt(self.reduce(x))
        full_size = [up(self.mlp(level)) for level, up in zip(levels, self.upsample)]
        return x + self.mix(torch.cat(full_size, dim=1))


class WaveMixLiteBlock(nn.Module):
    """WaveMix-Lite block (section 3.3, Fig. 2); (B, dim, s, s) -> (B, dim, s, s), s even.

    1x1 conv dim -> dim/4; one Haar DWT level (-> dim channels at s/2); MLP dim -> 2 dim -> dim;
    ConvTranspose2d(dim, dim, 4, stride 2, padding 1) back to s x s; BatchNorm; residual add.
    """

    def __init__(self, *, dim: int, mlp_mult: int = 2, dropout: float = 0.5,
                 dwt_backend: DWTBackend = "native"):
        super().__init__()
        if dim % 4:
            raise ValueError(f"WaveMix needs an embedding dimension divisible by 4, got {dim}")
        self.reduce = nn.Conv2d(dim, dim // 4, 1)
        self.dwt = HaarDWT(levels=1, backend=dwt_backend)
        self.mlp = channel_mlp(dim=dim, mult=mlp_mult, dropout=dropout)
        self.upsample = nn.ConvTranspose2d(dim, dim, 4, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (level,) = self.dwt(self.reduce(x))
        return x + self.norm(self.upsample(self.mlp(level)))


@dataclass(frozen=True)
class WaveMixConfig:
    """One WaveMix variant: `dim` channels, `depth` blocks, Lite (3.3) or multi-level (3.2)."""

    dim: int
    depth: int
    lite: bool
    mlp_mult: int = 2
    dropout: float = 0.5  # section 4.3: "A dropout of 0.5 was used across all models"


def build_wavemix(config: WaveMixConfig, *, num_classes: int, image_size: int,
                  dwt_backend: DWTBackend = "native") -> WaveMixSkeleton:
    """A WaveMix model for `num_classes` classes and square `image_size`-pixel inputs."""
    map_size = block_map_size(image_size)
    if config.lite:
        blocks = [WaveMixLiteBlock(dim=config.dim, mlp_mult=config.mlp_mult,
                                   dropout=config.dropout, dwt_backend=dwt_backend)
                  for _ in range(config.depth)]
    else:
        blocks = [WaveMixBlock(dim=config.dim, map_size=map_size, mlp_mult=config.mlp_mult,
                               dropout=config.dropout, dwt_backend=dwt_backend)
                  for _ in range(config.depth)]
    return WaveMixSkeleton(dim=config.dim, num_classes=num_classes, image_size=image_size,
                           blocks=blocks, dropout=config.dropout)


def _is_power_of_two_from_32(size: int) -> bool:
    return size >= 32 and size & (size - 1) == 0


# What the skeleton's stem does with the size (stem_strides), for WaveMix, 2D FNet and 2D MLP-Mixer.
STEM_ADAPTS = f"stem strides inputs above {MAX_BLOCK_MAP} px to a map of at most {MAX_BLOCK_MAP}×{MAX_BLOCK_MAP}"
SKELETON_SIZES = SizeRule(lambda size: size >= 8, "any size of at least 8 px", adapts=STEM_ADAPTS)
MULTILEVEL_SIZES = SizeRule(
    _is_power_of_two_from_32,
    "powers of two from 32 px (32, 64, 128, 256, ...): the stem brings them to a 32x32 or "
    "64x64 map, which the 4-level DWT divides evenly", adapts=STEM_ADAPTS)
LITE_SIZES = SizeRule(
    lambda size: size >= 8 and block_map_size(size) % 2 == 0,
    "sizes from 8 px whose stem output is even: any even size up to 64 px, and larger sizes "
    "the stem strides to an even map (e.g. 96, 128, 224, 256)", adapts=STEM_ADAPTS)

_MULTILEVEL_NOTE = ("Table 1 gives {paper}M; the authors' public multi-level block (4 DWT "
                    "levels, one MLP dim->2dim->dim shared across levels, up-convolutions to "
                    "dim/4) gives {ours:,} ({ratio:.3f}x). The paper states no other width, so "
                    "the gap is left open rather than filled by a guessed layer.")


def _multilevel(name: str, paper: float, ours: int):
    note = _MULTILEVEL_NOTE.format(paper=paper, ours=ours, ratio=ours / (paper * 1e6))
    return register_model(name, family="WaveMix", sizes=MULTILEVEL_SIZES, params_note=note)


def _build(config: WaveMixConfig, num_classes: int, image_size: int, dwt_backend: DWTBackend,
           options: dict) -> WaveMixSkeleton:
    # Builder options override config fields (e.g. dropout=0.0); a wrong name is a TypeError.
    return build_wavemix(replace(config, **options), num_classes=num_classes,
                         image_size=image_size, dwt_backend=dwt_backend)


@_multilevel("WaveMix-16/5", 0.18, 163_432)
def wavemix_16_5(*, num_classes: int, image_size: int, dwt_backend: DWTBackend = "native",
                 **options) -> WaveMixSkeleton:
    """WaveMix-16/5: multi-level blocks, dim 16, depth 5.

    Parameters (100 classes, 32 px): paper Table 1 0.18M, ours 163,432 (0.908x). The gap comes
    from the block's configuration, which the paper leaves open: we use the authors' public
    code (4 levels, shared MLP 16 -> 32 -> 16, up-convolutions to 4 channels), and nothing the
    text states accounts for the missing ~17k. The count is the same at 64 px (4 levels).
    """
    return _build(WaveMixConfig(dim=16, depth=5, lite=False), num_classes, image_size,
                  dwt_backend, options)


@_multilevel("WaveMix-32/5", 0.72, 644_588)
def wavemix_32_5(*, num_classes: int, image_size: int, dwt_backend: DWTBackend = "native",
                 **options) -> WaveMixSkeleton:
    """WaveMix-32/5: multi-level blocks, dim 32, depth 5.

    Parameters (100 classes, 32 px): paper Table 1 0.72M, ours 644,588 (0.895x); same
    assumption and open gap as WaveMix-16/5 (shared MLP 32 -> 64 -> 32, up-convolutions to 8).
    """
    return _build(WaveMixConfig(dim=32, depth=5, lite=False), num_classes, image_size,
                  dwt_backend, options)


@_multilevel("WaveMix-64/5", 2.88, 2_560_372)
def wavemix_64_5(*, num_classes: int, image_size: int, dwt_backend: DWTBackend = "native",
                 **options) -> WaveMixSkeleton:
    """WaveMix-64/5: multi-level blocks, dim 64, depth 5.

    Parameters (100 classes, 32 px): paper Table 1 2.88M, ours 2,560,372 (0.889x); same
    assumption and open gap as WaveMix-16/5 (shared MLP 64 -> 128 -> 64, up-convolutions to 16).
    """
    return _build(WaveMixConfig(dim=64, depth=5, lite=False), num_classes, image_size,
                  dwt_backend, options)


@register_model("WaveMix-128/7", family="WaveMix", sizes=LITE_SIZES)
def wavemix_128_7(*, num_classes: int, image_size: int, dwt_backend: DWTBackend = "native",
                  **options) -> WaveMixSkeleton:
    """WaveMix-128/7: WaveMix-Lite blocks, dim 128, depth 7.

    Parameters (100 classes): 2,416,580, matching Table 1's 2.42M (0.9986x); independent of
    image size.
    """
    return _build(WaveMixConfig(dim=128, depth=7, lite=True), num_classes, image_size,
                  dwt_backend, options)


@register_model("WaveMix-256/7", family="WaveMix", sizes=LITE_SIZES)
def wavemix_256_7(*, num_classes: int, image_size: int, dwt_backend: DWTBackend = "native",
                  **options) -> WaveMixSkeleton:
    """WaveMix-256/7: WaveMix-Lite blocks, dim 256, depth 7.

    Parameters (100 classes): 9,625,380, matching Table 1's 9.62M to its last digit (1.0006x);
    independent of image size.
    """
    return _build(WaveMixConfig(dim=256, depth=7, lite=True), num_classes, image_size,
                  dwt_backend, options)
