"""Dense peak FLOP/s of common GPUs, for model FLOPs utilisation (MFU), and how GPU names compare.

Vendor datasheet figures without sparsity, in FLOP/s: tensor-core fp16 and bf16 with fp32
accumulation, and plain fp32 (no TF32). The card table (gpus.py) gives each card its peaks; a
device is found there by its exact name as `torch.cuda.get_device_name` reports it, after
:func:`normalise_name` (case, punctuation and the vendor's brand words do not count), never by a
substring: "NVIDIA L40" is not an "NVIDIA L4", and an "NVIDIA H100 NVL" is not the SXM part.
Unknown devices give None, and MFU stays empty.

Left out on purpose: the A10G (AWS's part; NVIDIA publishes no datasheet for it) and the H100 NVL
and H200 NVL (their datasheets changed their per-GPU figures between editions).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

TERA = 1e12
PRECISIONS = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class Peak:
    """Dense peaks of one card, FLOP/s; bf16 is None where the tensor cores have no bf16 (pre-Ampere)."""

    fp16: float
    bf16: Optional[float]
    fp32: float
    source: str

    def for_precision(self, precision: str) -> Optional[float]:
        return {"fp16": self.fp16, "bf16": self.bf16, "fp32": self.fp32}[precision]


def _dense(with_sparsity_tflops: float) -> float:
    """Datasheets that print only the 2:4-sparsity figure: dense is half of it."""
    return with_sparsity_tflops / 2 * TERA


H100_SXM = Peak(_dense(1979), _dense(1979), 67 * TERA, "NVIDIA H100 Tensor Core GPU datasheet (SXM)")
H100_PCIE = Peak(_dense(1513), _dense(1513), 51 * TERA, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)")
H200_SXM = Peak(_dense(1979), _dense(1979), 67 * TERA, "NVIDIA H200 Tensor Core GPU datasheet (SXM)")
A100 = Peak(312 * TERA, 312 * TERA, 19.5 * TERA, "NVIDIA A100 Tensor Core GPU datasheet (SXM and PCIe)")
V100_SXM2 = Peak(125 * TERA, None, 15.7 * TERA, "NVIDIA V100 Tensor Core GPU datasheet (SXM2)")
V100_PCIE = Peak(112 * TERA, None, 14 * TERA, "NVIDIA V100 Tensor Core GPU datasheet (PCIe)")
V100S_PCIE = Peak(130 * TERA, None, 16.4 * TERA, "NVIDIA V100 Tensor Core GPU datasheet (V100S PCIe)")
T4 = Peak(65 * TERA, None, 8.1 * TERA, "NVIDIA T4 Tensor Core GPU datasheet (mixed precision)")
L4 = Peak(_dense(242), _dense(242), 30.3 * TERA, "NVIDIA L4 Tensor Core GPU datasheet")
L40 = Peak(181.05 * TERA, 181.05 * TERA, 90.5 * TERA, "NVIDIA L40 GPU datasheet (fp32 accumulate)")
L40S = Peak(362.05 * TERA, 362.05 * TERA, 91.6 * TERA, "NVIDIA L40S GPU datasheet")
A10 = Peak(125 * TERA, 125 * TERA, 31.2 * TERA, "NVIDIA A10 Tensor Core GPU datasheet")
RTX_A6000 = Peak(_dense(309.7), _dense(309.7), 38.7 * TERA, "NVIDIA RTX A6000 datasheet")
RTX_4090 = Peak(165.2 * TERA, 165.2 * TERA, 82.6 * TERA, "NVIDIA Ada GPU architecture whitepaper (fp32 accumulate)")
RTX_3090 = Peak(71 * TERA, 71 * TERA, 35.6 * TERA, "NVIDIA Ampere GA102 GPU architecture whitepaper (fp32 accumulate)")

# Brand words a driver may or may not put before the model ("Tesla T4", "NVIDIA GeForce RTX 4090").
_BRAND_WORDS = {"nvidia", "tesla", "geforce"}


def normalise_name(device_name: str) -> str:
    """Lower case, every run of spaces and punctuation one space, leading brand words dropped:
    "NVIDIA A100-SXM4-80GB" -> "a100 sxm4 80gb"."""
    words = re.sub(r"[^0-9a-z]+", " ", device_name.casefold()).split()
    while words and words[0] in _BRAND_WORDS:
        words.pop(0)
    return " ".join(words)
