"""Which way of measuring the paper's memory and max-batch tables (1, 4 and 6) match, from first principles.

The paper says it trained with AMP but not how it read "GPU GB" nor how it ran inference for its
max inference batch. Each protocol below is computed from the CPU estimate alone (no figure of the
paper is used to compute another) and scored by how far it lands from the paper:

* precision: fp16 AMP with CUDA's cast policy, or float32 (AMP off);
* memory read as: allocated (tensors, max_memory_allocated), reserved (the caching allocator's model
  plus cuBLAS workspaces, max_memory_reserved) or device (plus the CUDA context and libraries: what
  nvidia-smi shows) on the paper's card, the V100-SXM2-16GB of the GPU table (gpus.py; its overheads:
  Volta, CUDA 11, eager loading, the toolchain of 2021-22);
* inference under torch.inference_mode, or recording autograd's graph (a forward without no_grad).

A max batch is the largest whose step runs within that card's memory (the device memory it needs, as the
max-batch prediction judges it: probes.DeviceFit), read off the line through the estimates at batches
64 and 128 (the estimate is affine in the batch up to the allocator's rounding). Residuals are
log2(ours / paper); a protocol's score is their root mean square, so 1.0 means a factor of 2 typically.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

from ..core.gpus import PAPER_CARD, card_budget
from ..models import PaperValue, get_entry, paper_values

PAPER_GPU, PAPER_CUDA, PAPER_LOADING = PAPER_CARD, "11.3", "eager"
PRECISIONS = ("fp16", "off")
READINGS = ("allocated", "reserved", "device")
INFERENCES = ("inference_mode", "autograd")
BATCHES = (64, 128)   # the two estimates a max batch is read from
TABLES = (1, 4, 6)
TABLE_CLASSES = {1: 100, 4: 1000, 6: 100}   # CIFAR-100's and ImageNet-1k's heads
METRICS = ("gpu_train_batch64", "max_batch_train", "max_batch_infer")


@dataclass(frozen=True)
class Entry:
    table: int
    model: str
    image_size: int
    metric: str
    paper: float
    ours: float

    @property
    def residual(self) -> float:
        return math.log2(self.ours / self.paper) if self.ours > 0 else float("inf")


@dataclass(frozen=True)
class ProtocolFit:
    table: int
    protocol: str                # "fp16, device, inference_mode"; the parts a table does not use are left out
    entries: tuple[Entry, ...]

    @property
    def score(self) -> float:
        """Root mean square of log2(ours / paper)."""
        return math.sqrt(statistics.fmean(e.residual ** 2 for e in self.entries))

    @property
    def median_ratio(self) -> float:
        return 2 ** statistics.median(e.residual for e in self.entries)


def _band(estimate, fit, mode: str) -> dict[str, int]:
    """The readings of one estimate on the paper's card, and the device memory its step needs."""
    from ..estimate.cuda_overheads import band
    b = band(estimate.allocated_bytes, estimate.reserved_bytes, fit.overheads.row, mode)
    return {"allocated": b.allocated_bytes, "reserved": b.reserved_bytes, "device": b.device_bytes,
            "needed": fit.needed_bytes(estimate)}


def _max_batch(at: dict[int, dict[str, int]]) -> float:
    """Largest batch whose step runs within the paper's card, on the line through BATCHES."""
    (b1, b2) = BATCHES
    per_image = (at[b2]["needed"] - at[b1]["needed"]) / (b2 - b1)
    fixed = at[b1]["needed"] - per_image * b1
    return max(0.0, math.floor((card_budget(PAPER_GPU) - fixed) / per_image)) if per_image > 0 else float("inf")


def model_figures(model: str, image_size: int, precision: str, inference: str, num_classes: int) -> dict[str, dict]:
    """{"train"|"infer": {batch: {reading: bytes}}} for one model, size, head and protocol."""
    import torch
    from ..estimate.cuda_overheads import overheads_for
    from .memory import CpuEstimator
    from .probes import DeviceFit
    from ..sources.training import StepConfig
    overheads = overheads_for(PAPER_GPU, cuda_version=PAPER_CUDA, loading=PAPER_LOADING)
    entry = get_entry(model)
    config = StepConfig(device=torch.device("cpu"), amp=precision, inference=inference, num_classes=num_classes)
    estimator = CpuEstimator(lambda: entry.build(num_classes=config.num_classes, image_size=image_size), config)
    return {mode: {b: _band(estimator.estimate(mode, batch=b, image_size=image_size),
                            DeviceFit(overheads, card_budget(PAPER_GPU), mode), mode) for b in BATCHES}
            for mode in ("train", "infer")}


def fit(values: Optional[Iterable[PaperValue]] = None,
        figures: Callable[[str, int, str, str, int], dict] = model_figures,
        say: Callable[[str], None] = lambda line: None) -> list[ProtocolFit]:
    """Every protocol's entries for Tables 1, 4 and 6, in table then protocol order."""
    wanted = [v for v in (paper_values() if values is None else values)
              if v.table in TABLES and v.metric in METRICS and v.value > 0]
    cache: dict[tuple, dict] = {}

    def got(model, size, precision, inference, table):
        key = (model, size, precision, inference, TABLE_CLASSES[table])
        if key not in cache:
            say(f"  {model} @ {size} px, {TABLE_CLASSES[table]} classes, {precision}, {inference}")
            cache[key] = figures(*key)
        return cache[key]

    fits = []
    for table in TABLES:
        rows = [v for v in wanted if v.table == table]
        if not rows:
            continue
        for precision in PRECISIONS:
            for reading in READINGS:
                for inference in INFERENCES:
                    entries, used = [], set()
                    for v in rows:
                        if v.metric == "gpu_train_batch64":
                            used.add("reading")
                            step = got(v.model, v.image_size, precision, "inference_mode", table)["train"]
                            ours = step[64][reading] / 2**30
                        elif v.metric == "max_batch_train":
                            ours = _max_batch(got(v.model, v.image_size, precision, "inference_mode", table)["train"])
                        else:
                            used.add("inference")
                            ours = _max_batch(got(v.model, v.image_size, precision, inference, table)["infer"])
                        entries.append(Entry(table, v.model, v.image_size, v.metric, v.value, float(ours)))
                    name = ", ".join([precision if precision == "fp16" else "fp32 (AMP off)",
                                      *([reading] if "reading" in used else []),
                                      *([inference] if "inference" in used else [])])
                    if name not in {f.protocol for f in fits if f.table == table}:
                        fits.append(ProtocolFit(table, name, tuple(entries)))
    return fits


def to_json(fits: list[ProtocolFit], *, command: str, torch_version: str) -> dict:
    return {"command": command, "torch": torch_version, "paper_gpu": PAPER_GPU, "paper_cuda": PAPER_CUDA,
            "fits": [{"table": f.table, "protocol": f.protocol, "entries": [asdict(e) for e in f.entries]}
                     for f in fits]}


def from_json(data: dict) -> list[ProtocolFit]:
    return [ProtocolFit(f["table"], f["protocol"], tuple(Entry(**e) for e in f["entries"])) for f in data["fits"]]
