"""Measured values beside the paper's published ones. Pure pairing: no I/O, never imports torch.

Each :class:`PaperComparison` pairs one value of the paper (``models/paper_values.csv``) with the
same quantity read off one ok :class:`Result` of the same model (display name) and image size.
Units and readings:

* ``params``: millions of parameters (``params_total / 1e6``), as in Tables 1 and 2.
* ``gpu_train_batch64``: peak training memory at batch 64, in GiB (``memory.peak_train_bytes /
  2**30``). The paper's "GB" is read as GiB, the unit nvidia-smi and PyTorch report memory in;
  compared only when the memory was measured at batch 64. Ours is the caching allocator's peak
  (or a CPU estimate, said in the note), which excludes the CUDA context nvidia-smi would include.
* ``max_batch_train`` / ``max_batch_infer``: images, compared only when the result's budget is
  16 GiB within 1%, since Tables 4 and 6 are "on a 16 GB GPU". The note says when ours is predicted.
* ``train_images_per_s`` / ``infer_images_per_s``: Table 5's images/s. The paper timed a 16 GB V100,
  so a rate is comparable only when measured on a card with the paper's card's datasheet peaks
  (``on_paper_gpu``): elsewhere (a CPU, an H200) the ratio says how much faster one machine is than
  another, nothing about the model, and ``ratio`` is None. The note names our device, precision
  and batch.

A measurement that is missing, or taken under other conditions, gives no comparison. Memory and max
batch taken on another device (or estimated on a CPU) stay comparable: both are about the model
within the paper's 16 GB budget, and the note says how each was taken.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from ..core.gpus import PAPER_BUDGET_BYTES, PAPER_CARD, card_budget, find_card, find_peak
from ..models import PaperValue, paper_values
from ..core.results import Result

GIB = 2**30
BUDGET_TOLERANCE = 0.01          # a budget within 1% of 16 GiB counts as the paper's 16 GB GPU
PAPER_BATCH_SIZE = 64            # Tables 1 and 4 report GPU memory at batch 64

# Short captions of the paper's tables, for headings; paraphrased, with the conditions that matter.
TABLE_CAPTIONS = {
    1: "Table 1: parameters and GPU memory for training at batch 64, 32×32 px (CIFAR, 100 classes)",
    2: "Table 2: parameters, 28×28 px (EMNIST)",
    4: "Table 4: GPU memory at batch 64 and largest training batch on a 16 GB GPU, 64×64 px (ImageNet-1k)",
    5: "Table 5: training and inference images/s at 32×32 and 64×64 px on a 16 GB GPU (V100)",
    6: "Table 6: largest training and inference batch on a 16 GB GPU, 32×32 px (CIFAR-100)",
}
METRIC_LABELS = {
    "params": "params",
    "gpu_train_batch64": "GPU memory @ batch 64",
    "max_batch_train": "max train batch",
    "max_batch_infer": "max infer batch",
    "train_images_per_s": "train",
    "infer_images_per_s": "infer",
}
RATE_METRICS = ("train_images_per_s", "infer_images_per_s")  # comparable on the paper's GPU only
MEASURED_UNITS = {"params": "M", "gpu_train_batch64": "GiB", "max_batch_train": "images",
                  "max_batch_infer": "images", "train_images_per_s": "images/s",
                  "infer_images_per_s": "images/s"}


@dataclass(frozen=True)
class PaperComparison:
    """One published value and ours. ``ratio`` is measured / paper, None where the two are not
    comparable (images/s off the paper's GPU: see the module doc); ``unit`` is ours."""

    table: int
    model: str
    metric: str
    image_size: int
    paper_value: float
    measured_value: float
    unit: str
    ratio: Optional[float]
    note: str
    device_name: str = ""


def device_of(result: Result) -> str:
    return result.environment.device_name if result.environment else "unknown device"


def on_paper_gpu(device_name: str) -> bool:
    """True for a device with the datasheet peaks of the paper's card (PAPER_CARD, a V100-SXM2): the
    only devices whose images/s can be set beside Table 5's."""
    paper = find_card(PAPER_CARD)
    peak = find_peak(device_name)
    return peak is not None and paper is not None and peak == paper.card.peak


def comparable(metric: str, device_name: str) -> bool:
    """Whether `metric` measured on `device_name` is comparable with the paper's value of it."""
    return metric not in RATE_METRICS or on_paper_gpu(device_name)


def ratio_text(ratio: Optional[float]) -> str:
    """measured / paper as the reports print it: two decimals, two significant digits below 0.1 (so a
    small ratio never reads 0.00); empty for None, a pair that is not comparable."""
    if ratio is None:
        return ""
    return f"{ratio:.2f}" if abs(ratio) >= 0.1 else f"{ratio:.2g}"


def budget_is_paper_gpu(budget_bytes: int) -> bool:
    """True for a max-batch budget of 16 GiB within 1%, or the memory of the paper's card: its "16 GB GPU"."""
    return (abs(budget_bytes - PAPER_BUDGET_BYTES) <= BUDGET_TOLERANCE * PAPER_BUDGET_BYTES
            or budget_bytes == card_budget(PAPER_CARD))


def measured(result: Result, metric: str) -> Optional[tuple[float, str]]:
    """The value of `metric` in the paper's units and a note on how it was taken; None when missing."""
    if metric == "params":
        if result.params_total is None:
            return None
        return result.params_total / 1e6, f"{result.settings.num_classes} classes"
    if metric == "gpu_train_batch64":
        memory = result.memory
        if memory is None or memory.batch_size != PAPER_BATCH_SIZE:
            return None
        how = "CPU estimate, not GPU memory" if memory.is_estimate else "CUDA allocator peak"
        return memory.peak_train_bytes / GIB, how
    if metric in ("max_batch_train", "max_batch_infer"):
        found = result.max_batch_train if metric == "max_batch_train" else result.max_batch_infer
        if found is None or not budget_is_paper_gpu(found.budget_bytes):
            return None
        how = "probed on the GPU" if not found.predicted else (
            "predicted from CPU estimates" + (f", its upper end within the budget on {found.overhead_source}"
                                              if found.overhead_source else ""))
        return float(found.max_batch), how + (", search capped" if found.capped else "")
    if metric in ("train_images_per_s", "infer_images_per_s"):
        timing = result.throughput
        value = getattr(timing, metric) if timing is not None else None
        if value is None:
            return None
        precision = timing.precision or result.settings.amp
        how = f"{device_of(result)}, {precision}, batch {timing.batch_size}; paper: V100"
        return float(value), how + ("" if comparable(metric, device_of(result)) else ", not comparable")
    return None


def compare_with_paper(results: Iterable[Result],
                       values: Optional[Sequence[PaperValue]] = None) -> list[PaperComparison]:
    """Every (paper value, result) pair with a measurement, in the paper's table order, then the results'."""
    usable = [r for r in results if r.ok]
    out = []
    for value in (paper_values() if values is None else values):
        if value.value <= 0:
            continue
        for result in usable:
            if result.model_name != value.model or result.settings.image_size != value.image_size:
                continue
            got = measured(result, value.metric)
            if got is None:
                continue
            ours, note = got
            out.append(PaperComparison(table=value.table, model=value.model, metric=value.metric,
                                       image_size=value.image_size, paper_value=value.value,
                                       measured_value=ours, unit=MEASURED_UNITS[value.metric],
                                       ratio=ours / value.value if comparable(value.metric, device_of(result))
                                       else None, note=note,
                                       device_name=device_of(result)))
    return out
