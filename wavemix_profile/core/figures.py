"""A number with what it rests on: the tables of GPU memory sizes (gpus.py) and CUDA overheads
(cuda_overheads.py) hold every figure so. Never imports torch."""
from __future__ import annotations

from dataclasses import dataclass

BASES = ("measured", "documented", "code", "assumption")


@dataclass(frozen=True)
class Figure:
    """One figure in bytes, with what it rests on: `basis` is one of BASES; `source` says where the
    number comes from (a link and what was measured), or for an assumption, why it is assumed."""

    bytes: int
    basis: str
    source: str

    def __post_init__(self):
        if self.basis not in BASES or not self.source.strip():
            raise ValueError(f"a figure needs a basis in {BASES} and a source: {self!r}")
