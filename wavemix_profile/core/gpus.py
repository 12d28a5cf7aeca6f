"""The GPUs a prediction can be for: memory size, compute capability and datasheet peaks, one row a card.

A card's memory is what `torch.cuda.get_device_properties(i).total_memory` reports on it (CUDA's
totalGlobalMem, which deviceQuery prints as "Total amount of global memory"): the budget a max-batch
prediction for that card works within. Each figure says where it was seen. The driver takes a little
of the card for itself and newer drivers take more (a T4 shows 179 MiB less under driver 12.2 than under
11.0), so where sources disagree the smaller figure is taken; nvidia-smi's totals are larger still and
are used only where nothing else was found, and say so.

A device is found by its name as `torch.cuda.get_device_name` reports it, or by the table's short name,
after gpu_peaks.normalise_name (case, punctuation and leading brand words do not count), never by a
substring: "NVIDIA L40" is not an "NVIDIA L4". A shorter name that fits several cards ("V100", "H100",
"A100-80GB") means the one with the least memory, and `find_card` says which it took. Never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .figures import Figure
from .gpu_peaks import (A10, A100, H100_PCIE, H100_SXM, H200_SXM, L4, L40, L40S, PRECISIONS, RTX_3090, RTX_4090,
                        RTX_A6000, T4, V100_PCIE, V100_SXM2, V100S_PCIE, Peak, normalise_name)

MIB = 2**20


def _measured(nbytes: int, source: str) -> Figure:
    return Figure(nbytes, "measured", source)


def _as(other: str, figure: Figure, why: str) -> Figure:
    return Figure(figure.bytes, "assumption", f"no published figure found; {why}: {other}'s, {figure.source}")


_V100_16 = _measured(16160 * MIB, "torch 1.8.1: _CudaDeviceProperties(name='Tesla V100-SXM2-16GB', ..., "
                                  "total_memory=16160MB) in YOLOv5's Colab notebook output, mirrored at "
                                  "https://huggingface.co/spaces/xiang-wuu/yolov5/commit/cac8a765c896bdd5a7912b51a476da5abf974a1a")
_V100_32 = _measured(34_058_272_768, "NVML total (nvidia-smi's figure, not CUDA's: none found), driver 418.67, "
                                     "Tesla V100-SXM2-32GB: https://pastebin.com/AaFUPNi5; nvidia-smi shows 32510 MiB "
                                     "under driver 440.33 (https://github.com/Alibaba-MIIL/TResNet/issues/3): the smaller taken")
_A100_40 = _measured(42_298_834_944, "deviceQuery, NVIDIA A100-SXM4-40GB, driver 12.2: 40339 MBytes (42298834944 "
                                     "bytes), https://github.com/bottlerocket-os/bottlerocket/pull/3873")
_A100_80_PCIE = _measured(81049 * MIB, "mixbench, NVIDIA A100 80GB PCIe, driver 12.3: 'Total global mem: 81049 MB', "
                                       "https://github.com/ekondis/mixbench/issues/47")


@dataclass(frozen=True)
class Card:
    """One GPU: `name` is the table's short name (what `--target-gpu` is usually given), `device_name`
    what torch reports, `sm` its compute capability (major * 10 + minor), `memory` its total_memory
    (None: not known here; a budget must be given) and `peak` its dense datasheet FLOP/s (None: no
    datasheet figure, no MFU)."""

    name: str
    device_name: str
    sm: int
    memory: Optional[Figure]
    peak: Optional[Peak] = None


CARDS: tuple[Card, ...] = (
    Card("V100-SXM2-16GB", "Tesla V100-SXM2-16GB", 70, _V100_16, V100_SXM2),
    Card("V100-PCIE-16GB", "Tesla V100-PCIE-16GB", 70,
         _as("the V100-SXM2-16GB", _V100_16, "the same 16 GB of HBM2"), V100_PCIE),
    Card("V100-SXM2-32GB", "Tesla V100-SXM2-32GB", 70, _V100_32, V100_SXM2),
    Card("V100-PCIE-32GB", "Tesla V100-PCIE-32GB", 70,
         _as("the V100-SXM2-32GB", _V100_32, "the same 32 GB of HBM2"), V100_PCIE),
    Card("V100S-PCIE-32GB", "Tesla V100S-PCIE-32GB", 70,
         _as("the V100-SXM2-32GB", _V100_32, "the same 32 GB of HBM2"), V100S_PCIE),
    Card("T4", "Tesla T4", 75, _measured(15_655_829_504, "deviceQuery, Tesla T4, driver 12.2: 14931 MBytes "
                                                          "(15655829504 bytes), https://github.com/bottlerocket-os/"
                                                          "bottlerocket/pull/3798 (15110 MBytes under driver 11.0)"), T4),
    Card("A10", "NVIDIA A10", 86, _measured(23_609_475_072, "cudaGetDeviceProperties, NVIDIA A10, driver 12.2: "
                                                             "23609475072 bytes, https://github.com/aalanwyr/face2cuda/blob/"
                                                             "9ad81566c5da19bc4950596a37d3820a595b280a/step2cuda/README.md"), A10),
    Card("A10G", "NVIDIA A10G", 86, _measured(22512 * MIB, "torch 2.1.0: total_memory printed as 22513MiB (rounded; "
                                                            "22512 MiB taken) by Ultralytics on AWS, "
                                                            "https://github.com/ultralytics/ultralytics/issues/7673")),
    Card("A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", 80, _A100_40, A100),
    Card("A100-PCIE-40GB", "NVIDIA A100-PCIE-40GB", 80,
         _as("the A100-SXM4-40GB", _A100_40, "the same 40 GB of HBM2"), A100),
    Card("A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", 80,
         _measured(81050 * MIB, "torch 2.9.1 with CUDA 12.8: total_memory printed as 81051MiB (rounded; 81050 MiB "
                                "taken) by Ultralytics, https://github.com/ultralytics/ultralytics/issues/22877; "
                                "deviceQuery shows 81158 MBytes under driver 12.5 (https://github.com/thamada/"
                                "nvidia-smi/blob/b09ef139265ffc7e3c78006346981de8e4d70499/gls/A100SXMx4_deviceQuery.py)"),
         A100),
    Card("A100-PCIE-80GB", "NVIDIA A100 80GB PCIe", 80, _A100_80_PCIE, A100),
    Card("L4", "NVIDIA L4", 89, _measured(23_570_219_008, "deviceQuery, NVIDIA L4, driver 12.4: 22478 MBytes "
                                                           "(23570219008 bytes), https://github.com/thamada/nvidia-smi/blob/"
                                                           "b09ef139265ffc7e3c78006346981de8e4d70499/gls/L4_deviceQuery.py"), L4),
    Card("L40", "NVIDIA L40", 89, None, L40),
    Card("L40S", "NVIDIA L40S", 89, _measured(47_803_596_800, "deviceQuery, NVIDIA L40S, driver 12.4: 45589 MBytes "
                                                               "(47803596800 bytes), https://github.com/thamada/nvidia-smi/"
                                                               "blob/c768aedc1e0bf705fc91b08e8d9403bf53760365/nvsim/"
                                                               "L40S_deviceQuery.py"), L40S),
    Card("RTX A6000", "NVIDIA RTX A6000", 86, None, RTX_A6000),
    Card("RTX 3090", "NVIDIA GeForce RTX 3090", 86,
         _measured(25_286_672_384, "cudaGetDeviceProperties, NVIDIA GeForce RTX 3090, a 2025 driver: 25286672384 bytes, "
                                   "https://github.com/Jumperkables/cuda-benchmarking/blob/"
                                   "76861cac2517f94d10bdf106589021991464bbda/00_deviceQuery/README.md (24154 MBytes "
                                   "under driver 12.6)"), RTX_3090),
    Card("RTX 4090", "NVIDIA GeForce RTX 4090", 89,
         _measured(25_386_352_640, "deviceQuery, NVIDIA GeForce RTX 4090, Linux, driver 12.4: 24210 MBytes "
                                   "(25386352640 bytes), https://github.com/thamada/nvidia-smi/blob/"
                                   "b09ef139265ffc7e3c78006346981de8e4d70499/gls/RTX4090_deviceQuery.py"), RTX_4090),
    Card("RTX 5090", "NVIDIA GeForce RTX 5090", 120,
         _measured(33_677_180_928, "deviceQuery, NVIDIA GeForce RTX 5090, driver 570.133.04: 32117 MBytes "
                                   "(33677180928 bytes), https://github.com/aikitoria/open-gpu-kernel-modules/issues/1")),
    Card("H100-PCIE", "NVIDIA H100 PCIe", 90,
         _as("the A100 80GB PCIe", _A100_80_PCIE, "80 GB on a PCIe card; the smallest figure of the 80 GB cards here"),
         H100_PCIE),
    Card("H100-SXM", "NVIDIA H100 80GB HBM3", 90,
         _measured(85_045_477_376, "deviceQuery, NVIDIA H100 80GB HBM3, driver 12.7: 81106 MBytes (85045477376 bytes), "
                                   "https://github.com/thamada/nvidia-smi/blob/03fbe6e68c0bb4c28b72d5da786a9712a33cf408/"
                                   "nvsim/H100SXMx8_deviceQuery.py"), H100_SXM),
    Card("H200", "NVIDIA H200", 90,
         _measured(143156 * MIB, "_CudaDeviceProperties(name='NVIDIA H200', ..., total_memory=143156MB) in a Modal "
                                 "deployment script, https://github.com/ai-bot-pro/achatbot/blob/"
                                 "298019b35ebdd32d4ec0daae998b2308099ba77c/deploy/modal/src/llm/vllm/vlm/skywork_r1v.py"),
         H200_SXM),
    Card("B200", "NVIDIA B200", 100,
         _measured(182642 * MIB, "_CudaDeviceProperties(name='NVIDIA B200', ..., total_memory=182642MB), the same "
                                 "file: https://github.com/ai-bot-pro/achatbot/blob/298019b35ebdd32d4ec0daae998b2308099ba77c/"
                                 "deploy/modal/src/llm/vllm/vlm/skywork_r1v.py")),
)


def _words(name: str) -> frozenset[str]:
    """A name's words after normalise_name; a bare number of gigabytes ("80") is "80gb"."""
    return frozenset(w + "gb" if w.isdigit() and w in ("16", "24", "32", "40", "48", "80") else w
                     for w in normalise_name(name).split())


def _index(cards: tuple[Card, ...]) -> dict[str, Card]:
    index: dict[str, Card] = {}
    for card in cards:
        for key in {normalise_name(card.name), normalise_name(card.device_name)}:
            if key in index and index[key] is not card:
                raise ValueError(f"two GPU names normalise to {key!r}")
            index[key] = card
    return index


_BY_KEY = _index(CARDS)


@dataclass(frozen=True)
class Found:
    """The card a name means; `note` says why when the name fits several (empty for an exact name)."""

    card: Card
    note: str = ""


def find_card(name: str) -> Optional[Found]:
    """The card `name` means: an exact device or table name, or a shorter name all of whose words a
    card's names hold ("RTX 4090", "V100-16GB", "H100"); of several such cards, the one with the least
    memory. None for a name no card fits (a generation or compute capability among them)."""
    exact = _BY_KEY.get(normalise_name(name))
    if exact is not None:
        return Found(exact)
    words = _words(name)
    if not words:
        return None
    fitting = [c for c in CARDS if words <= (_words(c.name) | _words(c.device_name))]
    if not fitting:
        return None
    known = [c for c in fitting if c.memory is not None] or fitting
    card = min(known, key=lambda c: c.memory.bytes if c.memory else 0)
    if len(fitting) == 1:
        return Found(card)
    return Found(card, f"{name!r} fits {', '.join(c.name for c in fitting)}: {card.name} taken, the least "
                       "memory of them; name one to choose")


def find_peak(device_name: str) -> Optional[Peak]:
    """A device's datasheet peaks, by its exact name only (MFU must not borrow another card's)."""
    card = _BY_KEY.get(normalise_name(device_name))
    return None if card is None else card.peak


def peak_flops_per_s(device_name: str, precision: str) -> Optional[float]:
    """Dense peak FLOP/s for `precision` ("fp16", "bf16" or "fp32") on the named device, or None."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
    peak = find_peak(device_name)
    return None if peak is None else peak.for_precision(precision)


# A CPU prediction's budget when no card is named: the paper's "16 GB" V100, read as GiB.
DEFAULT_BUDGET_BYTES = 16 * 2**30
PAPER_BUDGET_BYTES = DEFAULT_BUDGET_BYTES   # the paper's "16 GB", read as GiB
# The card the paper measured on (its Tables 4-6: "a 16 GB GPU", a V100).
PAPER_CARD = "V100-SXM2-16GB"


def card_budget(target_gpu: Optional[str]) -> Optional[int]:
    """The memory, in bytes, of the card `target_gpu` names (find_card), or None: no name, a
    generation or compute capability, or a card whose memory the table does not know."""
    found = find_card(target_gpu) if target_gpu else None
    return found.card.memory.bytes if found is not None and found.card.memory is not None else None


def format_budget(n_bytes: int) -> str:
    """A memory budget in both units a reader may mean by "GB": "16.0 GiB (17.2 GB)". GiB (2^30 bytes) is
    what every table uses; GB (10^9 bytes) is what `--memory-budget 8GB` means."""
    return f"{n_bytes / 2**30:.1f} GiB ({n_bytes / 1e9:.1f} GB)"


def budget_label(n_bytes: int, target_gpu: Optional[str]) -> str:
    """A max-batch budget with the GPU it is for, as titles print it: "RTX 4090's 23.6 GiB (25.4 GB)"
    when the budget is the named card's memory, "16.0 GiB (17.2 GB) on ampere" when a GPU is named but
    the budget is not its memory, "16.0 GiB (17.2 GB)" when none is named."""
    found = find_card(target_gpu) if target_gpu else None
    if found is not None and found.card.memory is not None and found.card.memory.bytes == n_bytes:
        return f"{found.card.name}'s {format_budget(n_bytes)}"
    return format_budget(n_bytes) + (f" on {target_gpu}" if target_gpu else "")
