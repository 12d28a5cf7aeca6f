"""The WaveMix paper's published numbers, shipped as data, one row per value: costs in
paper_values.csv, top-1/top-5 accuracies (Tables 1 and 4) in paper_accuracy.csv.

Each value keeps its table, model (registry display name), metric or dataset, image size and unit,
so renderers and the paper-vs-measured comparison never type a number themselves.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PAPER = "Jeevan & Sethi, WaveMix: Resource-efficient Token Mixing for Images (2022)"
# Metrics: params (M), gpu_train_batch64 (GB at batch 64), max_batch_train / max_batch_infer
# (images, on a 16 GB GPU), train_images_per_s / infer_images_per_s.
# Every architecture the paper compares, in its tables' order: compare's and validate's default zoo.
PAPER_ZOO = ("ResNet-18", "ResNet-34", "ResNet-50", "ResNet-101", "2D FNet-64/5", "2D FNet-128/5",
             "2D MLP-Mixer-64/5", "2D MLP-Mixer-128/5", "ConvMixer-256/8", "ConvMixer-256/16",
             "ViT-128/4x4", "Hybrid ViN-128/4x4", "CCT-128/4x4", "CvT-128/4x4", "WaveMix-16/5",
             "WaveMix-32/5", "WaveMix-64/5", "WaveMix-128/7", "WaveMix-256/7")
METRICS = ("params", "gpu_train_batch64", "max_batch_train", "max_batch_infer",
           "train_images_per_s", "infer_images_per_s")


@dataclass(frozen=True)
class PaperValue:
    table: int
    model: str
    metric: str
    image_size: int
    value: float
    unit: str
    note: str


@lru_cache(maxsize=1)
def paper_values() -> tuple[PaperValue, ...]:
    """Every published value, in the order of the paper's tables."""
    with open(Path(__file__).with_name("paper_values.csv"), newline="", encoding="utf-8") as fh:
        return tuple(PaperValue(table=int(r["table"]), model=r["model"], metric=r["metric"],
                                image_size=int(r["image_size"]), value=float(r["value"]),
                                unit=r["unit"], note=r["note"])
                     for r in csv.DictReader(fh))


def paper_values_for(model: str) -> tuple[PaperValue, ...]:
    """The published values for one registry display name."""
    return tuple(v for v in paper_values() if v.model == model)


@dataclass(frozen=True)
class PaperAccuracy:
    """One published accuracy: `metric` is "top1" or "top5", `value` in `unit` (percent); `image_size`
    is the input the paper trained at for `dataset` (CIFAR: 32 px; Tiny ImageNet and its ImageNet-1k: 64 px)."""

    table: int
    model: str
    dataset: str
    image_size: int
    metric: str
    value: float
    unit: str


@lru_cache(maxsize=1)
def paper_accuracies() -> tuple[PaperAccuracy, ...]:
    """Every published accuracy, in the order of the paper's tables."""
    with open(Path(__file__).with_name("paper_accuracy.csv"), newline="", encoding="utf-8") as fh:
        return tuple(PaperAccuracy(table=int(r["table"]), model=r["model"], dataset=r["dataset"],
                                   image_size=int(r["image_size"]), metric=r["metric"], value=float(r["value"]),
                                   unit=r["unit"])
                     for r in csv.DictReader(fh))
