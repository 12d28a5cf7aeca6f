"""Multi-level 2D Haar DWT for the WaveMix blocks, with two interchangeable backends.

`HaarDWT(levels=J)` maps a (B, C, H, W) feature map to a list of J tensors; level j (1-based)
has shape (B, 4C, H/2^j, W/2^j) and holds, along channels, the level's approximation (C maps)
followed by its three detail sub-bands laid out channel-major (C x 3 maps: the three bands of
input channel 0 first). That is exactly the tensor the WaveMix authors build from
`pytorch_wavelets.DWTForward(J, mode='zero', wave='haar')` as
`torch.cat([yl_j, yh_j.reshape(B, 3C, h, w)], dim=1)` with yh_j of shape (B, C, 3, h, w), and
level j+1 is the transform of level j's approximation.

For a 2x2 block [[a, b], [c, d]] (rows top to bottom) Haar with orthonormal filters gives
    LL = (a + b + c + d) / 2
    band 0 = (a + b - c - d) / 2   (low-pass along W, high-pass along H)
    band 1 = (a - b + c - d) / 2   (high-pass along W, low-pass along H)
    band 2 = (a - b - c + d) / 2   (high-pass along both)
which is the order and sign pytorch_wavelets produces.

Backends:
  * ``"native"`` (default): those sums and differences on a free view of the input as 2x2
    blocks, written straight into the output layout; its backward is the inverse transform
    (Haar is orthonormal), computed the same way. Plain tensor ops, any device or layout.
  * ``"pytorch_wavelets"``: the package the paper used (grouped convolutions with a hand-written
    backward); kept as the reference the native backend is tested against.
"""
from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn as nn

DWTBackend = Literal["native", "pytorch_wavelets"]
BACKENDS: tuple[str, ...] = ("native", "pytorch_wavelets")


def _analysis(x: torch.Tensor) -> torch.Tensor:
    """One Haar level, (B, C, H, W) -> (B, 4C, H/2, W/2), without autograd (see haar_level)."""
    b, c, height, width = x.shape
    h, w = height // 2, width // 2
    # Splitting H and W into (half, 2) is a view for any strides, channels_last included.
    top, bottom = x.view(b, c, h, 2, w, 2).unbind(3)
    # Rows first, with the whole 1/2 scale here: lerp(t, b, 0.5) = (t + b) / 2 in one pass, and
    # (t - b) / 2 = (t + b) / 2 - b, so each stage is one op per output element.
    low = torch.lerp(top, bottom, 0.5)  # (B, C, h, w, 2): column pairs still interleaved
    high = low - bottom
    out = x.new_empty(b, 4 * c, h, w)
    bands = out[:, c:].view(b, c, 3, h, w)
    # Writing each sub-band straight into its place in the output saves the copies a
    # stack-then-cat would make; this is most of what makes the native backend fast.
    torch.add(low[..., 0], low[..., 1], out=out[:, :c])
    torch.add(high[..., 0], high[..., 1], out=bands[:, :, 0])  # high along H
    torch.sub(low[..., 0], low[..., 1], out=bands[:, :, 1])    # high along W
    torch.sub(high[..., 0], high[..., 1], out=bands[:, :, 2])  # high along both
    return out


def _synthesis(y: torch.Tensor) -> torch.Tensor:
    """The inverse of _analysis, (B, 4C, h, w) -> (B, C, 2h, 2w), without autograd."""
    b, c4, h, w = y.shape
    c = c4 // 4
    approx, bands = y[:, :c], y[:, c:].view(b, c, 3, h, w)
    # Undo the column stage into (B, C, h, w, 2) pairs, then the row stage (which holds the 1/2).
    low, high = y.new_empty(b, c, h, w, 2), y.new_empty(b, c, h, w, 2)
    torch.add(approx, bands[:, :, 1], out=low[..., 0])
    torch.sub(approx, bands[:, :, 1], out=low[..., 1])
    torch.add(bands[:, :, 0], bands[:, :, 2], out=high[..., 0])
    torch.sub(bands[:, :, 0], bands[:, :, 2], out=high[..., 1])
    x = y.new_empty(b, c, h, 2, w, 2)
    torch.lerp(low, high, 0.5, out=x[:, :, :, 0])      # top rows: (low + high) / 2
    torch.sub(x[:, :, :, 0], high, out=x[:, :, :, 1])  # bottom rows: (low - high) / 2
    return x.view(b, c, 2 * h, 2 * w)


class _HaarAnalysis(torch.autograd.Function):
    # The orthonormal Haar transform's adjoint is its inverse, so the backward is one synthesis
    # pass instead of autograd replaying every add, sub and copy of the forward.
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _analysis(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _HaarSynthesis.apply(grad)


class _HaarSynthesis(torch.autograd.Function):
    # The backward of _HaarAnalysis; differentiable in turn, so double backward works.
    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        return _synthesis(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _HaarAnalysis.apply(grad)


def haar_level(x: torch.Tensor) -> torch.Tensor:
    """One Haar level: (B, C, H, W) -> (B, 4C, H/2, W/2), approximation then channel-major details.

    H and W must be even (callers check). Values keep the orthonormal scale: a constant image of
    value v gives LL = 2v and zero details. Differentiable (twice and more).
    """
    return _HaarAnalysis.apply(x)


def _pytorch_wavelets_forward(levels: int) -> nn.Module:
    """`DWTForward(J=levels, mode='zero', wave='haar')`, imported only when asked for."""
    try:
        with warnings.catch_warnings():
            # pytorch_wavelets 1.3 imports pkg_resources at import time; the deprecation notice
            # is about that package, not about anything a user of this module can change.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            from pytorch_wavelets import DWTForward
    except ImportError as err:
        raise ImportError(
            "HaarDWT(backend='pytorch_wavelets') needs the pytorch-wavelets package "
            "(pip install 'pytorch-wavelets>=1.3' PyWavelets); backend='native' needs nothing"
        ) from err
    dwt = DWTForward(J=levels, mode="zero", wave="haar")
    # The Haar filters are constants: re-registering them as non-persistent keeps them out of
    # state_dict, so a checkpoint saved with one backend loads strictly into the other.
    for name, buffer in list(dwt.named_buffers(recurse=False)):
        dwt.register_buffer(name, buffer, persistent=False)
    return dwt


class HaarDWT(nn.Module):
    """Multi-level 2D Haar DWT returning one (B, 4C, H/2^j, W/2^j) tensor per level j = 1..levels.

    Keyword-only: `levels` (>= 1) and `backend` ("native" or "pytorch_wavelets"). Both backends
    give the same values (to float rounding) and the same layout; see the module docstring.
    Inputs need H and W divisible by 2^levels (both backends raise ValueError otherwise, so
    switching backend never changes which inputs are accepted).
    """

    def __init__(self, *, levels: int, backend: DWTBackend = "native"):
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown DWT backend {backend!r}; accepted values: "
                             + ", ".join(repr(b) for b in BACKENDS))
        self.levels = levels
        self.backend = backend
        # One single-level transform applied to each level's approximation: identical to the
        # J-level DWTForward, and it exposes the intermediate approximations the blocks need.
        self.reference = _pytorch_wavelets_forward(1) if backend == "pytorch_wavelets" else None

    def extra_repr(self) -> str:
        return f"levels={self.levels}, backend={self.backend!r}"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"HaarDWT expects (B, C, H, W), got shape {tuple(x.shape)}")
        factor = 2 ** self.levels
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(f"HaarDWT with {self.levels} levels needs H and W divisible by "
                             f"{factor}, got {height}x{width}")
        one_level = haar_level if self.reference is None else self._reference_level
        out: list[torch.Tensor] = []
        for _ in range(self.levels):
            level = one_level(x)
            out.append(level)
            x = level[:, : x.shape[1]]  # the approximation feeds the next level
        return out

    def _reference_level(self, x: torch.Tensor) -> torch.Tensor:
        approx, (details,) = self.reference(x)
        b, c, h, w = approx.shape
        return torch.cat([approx, details.reshape(b, 3 * c, h, w)], dim=1)
