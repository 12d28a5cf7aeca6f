"""Dense peak FLOP/s of common GPUs, for model FLOPs utilisation (MFU).

Vendor datasheet figures without sparsity, in FLOP/s: tensor-core fp16/bf16 with fp32
accumulation, and plain fp32 (no TF32). Matched by the first key found in the device name
(longest keys first, so "H100 PCIe" wins over "H100"). Unknown devices give None: MFU stays empty.
"""
from __future__ import annotations

TERA = 1e12
# name fragment: (fp16/bf16 tensor, fp32)
PEAKS: dict[str, tuple[float, float]] = {
    "H200": (989 * TERA, 67 * TERA),
    "H100 PCIe": (756 * TERA, 51 * TERA),
    "H100": (989 * TERA, 67 * TERA),
    "A100": (312 * TERA, 19.5 * TERA),
    "A10G": (70 * TERA, 31.2 * TERA),
    "A10": (125 * TERA, 31.2 * TERA),
    "L40S": (362 * TERA, 91.6 * TERA),
    "L4": (121 * TERA, 30.3 * TERA),
    "V100": (125 * TERA, 15.7 * TERA),
    "T4": (65 * TERA, 8.1 * TERA),
    "RTX A6000": (155 * TERA, 38.7 * TERA),
    "RTX 4090": (165 * TERA, 82.6 * TERA),
    "RTX 3090": (71 * TERA, 35.6 * TERA),
}


def peak_flops_per_s(device_name: str, precision: str) -> float | None:
    """Peak FLOP/s for `precision` ("fp16", "bf16" or "fp32") on the named device, or None."""
    for key in sorted(PEAKS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            half, single = PEAKS[key]
            return single if precision == "fp32" else half
    return None
