"""Images per second for training steps and inference passes (the paper's Table 5).

Warm-up iterations first (cuDNN autotuning, allocator growth, torch.compile), then `repeats`
timed blocks of `iterations` each. CUDA blocks are timed with CUDA events (GPU time between two
points in the stream); CPU blocks with the wall clock. Reported: the median images/s across
blocks and their coefficient of variation (standard deviation / mean).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .results import ThroughputResult
from .training import TrainStep, timed_precision


@dataclass(frozen=True)
class TimingSettings:
    batch_size: int
    warmup: int = 3
    iterations: int = 10
    repeats: int = 3


def time_blocks(run: Callable[[], None], settings: TimingSettings, device: torch.device) -> list[float]:
    """Seconds per block of `iterations` calls of run(), after `warmup` calls."""
    for _ in range(settings.warmup):
        run()
    seconds = []
    for _ in range(settings.repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            for _ in range(settings.iterations):
                run()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            for _ in range(settings.iterations):
                run()
            seconds.append(time.perf_counter() - begin)
    return seconds


def images_per_s(seconds: list[float], settings: TimingSettings) -> tuple[float, float]:
    """Median images/s over blocks and the coefficient of variation of images/s."""
    rates = [settings.batch_size * settings.iterations / s for s in seconds]
    mean = statistics.fmean(rates)
    cv = statistics.pstdev(rates) / mean if len(rates) > 1 else 0.0
    return statistics.median(rates), cv


def measure_throughput(step: TrainStep, settings: TimingSettings, *, image_size: int,
                       modes: tuple[str, ...] = ("train", "infer"),
                       peak_flops_per_s: float | None = None,
                       flops_per_image: tuple[int, int] | None = None) -> ThroughputResult:
    """Train and inference images/s; MFU when the device peak and the FLOPs per image are known."""
    device = step.config.device
    amp = timed_precision(step.config.amp, device)
    run_amp = "off" if amp == "fp32" else amp
    x, y = step.batch(settings.batch_size, image_size)
    rates: dict[str, tuple[float, float]] = {}
    if "train" in modes:
        rates["train"] = images_per_s(time_blocks(lambda: step.train(x, y, amp=run_amp), settings, device), settings)
    if "infer" in modes:
        rates["infer"] = images_per_s(time_blocks(lambda: step.infer(x, amp=run_amp), settings, device), settings)

    def mfu(mode: str, index: int) -> float | None:
        if mode not in rates or not peak_flops_per_s or not flops_per_image:
            return None
        return rates[mode][0] * flops_per_image[index] / peak_flops_per_s

    return ThroughputResult(
        batch_size=settings.batch_size, timer="cuda-events" if device.type == "cuda" else "wall-clock",
        threads=torch.get_num_threads(), iterations=settings.iterations, repeats=settings.repeats,
        train_images_per_s=rates.get("train", (None, None))[0], infer_images_per_s=rates.get("infer", (None, None))[0],
        train_cv=rates.get("train", (None, None))[1], infer_cv=rates.get("infer", (None, None))[1],
        train_mfu=mfu("train", 0), infer_mfu=mfu("infer", 1), precision=amp)
