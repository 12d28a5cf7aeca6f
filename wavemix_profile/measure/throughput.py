"""Images per second for training steps and inference passes (the paper's Table 5).

Warm-up iterations first (cuDNN autotuning, allocator growth, torch.compile), then `repeats`
timed blocks of `iterations` calls each. measure_throughput runs them, warm-up included, inside
`alone` (a run measuring several models at once stops the others meanwhile: time_alone.TimeAlone).
With `min_block_s` every timed block lasts at least that long, so that a fast model is not timed by
a clock tick and scheduler noise. The last warm-up call is timed, and a block runs as many calls as
last that long at its pace (torch.utils.benchmark's blocked_autorange likewise lets its block-size
estimate serve as the warm-up). A block that ends sooner shows the pace was too slow an estimate:
the calls grow to that block's pace and the blocks start over. CUDA blocks are timed with CUDA
events (GPU time between two points in the stream); CPU blocks with the wall clock.
Reported: the median images/s across blocks, every block's images/s, and their coefficient of
variation (standard deviation / mean), which renderers show beside each figure.

We keep this loop rather than torch.utils.benchmark.Timer: the energy meter's window must cover
the timed blocks and nothing else (Timer's calibration runs would be metered too), CUDA blocks are
timed by events in the stream, and Timer sets its own thread count (one by default).

Energy, where a counter can be read (energy.py: NVML on NVIDIA GPUs, RAPL on the CPU), is read
from just before the first timed block to just after the last: joules per image over every timed
image, and average watts over the summed block time. Where none can be read, the reason is kept.
MFU is images/s x FLOPs per image (train step or forward) / the device's dense peak (gpus.py).
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional, Union

import torch

from .energy import EnergyMeter, Unavailable
from ..core.results import ThroughputResult
from ..sources.training import TrainStep, timed_precision


@dataclass(frozen=True)
class TimingSettings:
    batch_size: int
    warmup: int = 3
    iterations: int = 10                 # calls per block; with min_block_s, the fewest
    repeats: int = 3                     # timed blocks
    min_block_s: Optional[float] = None  # every timed block lasts at least this long (time_blocks)


@dataclass(frozen=True)
class TimedBlocks:
    seconds: list[float]            # per block of `iterations` calls
    joules: Optional[float] = None  # over all blocks; None without an energy meter
    iterations: int = 0             # calls per block (0: the settings' own)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _block_seconds(run: Callable[[], None], calls: int, device: torch.device,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    if device.type == "cuda":
        # events are recorded on the current stream of the current device: make that the timed one (cuda:N)
        with torch.cuda.device(device):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            for _ in range(calls):
                run()
            end.record()
            end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = clock()
    for _ in range(calls):
        run()
    return clock() - begin


def first_block_calls(call_s: Optional[float], settings: TimingSettings) -> int:
    """Calls per block to begin with: `iterations`, or with `min_block_s` and the seconds of one
    warm-up call, as many calls at that pace as make a block last that long (never fewer)."""
    if not settings.min_block_s or not call_s:
        return settings.iterations
    return max(settings.iterations, math.ceil(settings.min_block_s / call_s))


def more_block_calls(calls: int, block_s: float, settings: TimingSettings) -> int:
    """Calls per block after a block of `calls` calls lasted `block_s`, less than `min_block_s`: as
    many as that block's pace needs, and at least one more, so that the count only grows."""
    needed = math.ceil(calls * settings.min_block_s / block_s) if block_s > 0 else 2 * calls
    return max(calls + 1, needed)


def time_blocks(run: Callable[[], None], settings: TimingSettings, device: torch.device,
                meter: Optional[EnergyMeter] = None, clock: Callable[[], float] = time.perf_counter) -> TimedBlocks:
    """Seconds per block of calls of run(), after `warmup` calls; with a meter, the joules used from
    just before the first block to just after the last. With `min_block_s` the last warm-up call is
    timed (first_block_calls) and every block must last that long: one that does not starts the
    blocks over with more calls (more_block_calls), the meter too. `clock` times CPU blocks."""
    call_s = None
    for done in range(1, settings.warmup + 1):
        if settings.min_block_s and done == settings.warmup:
            call_s = _block_seconds(run, 1, device, clock)
        else:
            run()
    calls = first_block_calls(call_s, settings)
    _sync(device)  # the warm-up's queued work must not land in the meter's window
    seconds: list[float] = []
    if meter is not None:
        meter.start()
    while len(seconds) < settings.repeats:
        seconds.append(_block_seconds(run, calls, device, clock))
        if settings.min_block_s and seconds[-1] < settings.min_block_s:
            calls, seconds = more_block_calls(calls, seconds[-1], settings), []
            if meter is not None:
                meter.stop()
                meter.start()
    return TimedBlocks(seconds, meter.stop() if meter is not None else None, iterations=calls)


def block_rates(blocks: TimedBlocks, settings: TimingSettings) -> list[float]:
    """Images/s of each timed block."""
    calls = blocks.iterations or settings.iterations
    return [settings.batch_size * calls / s for s in blocks.seconds]


def images_per_s(rates: list[float]) -> tuple[float, float]:
    """Median images/s over blocks and the coefficient of variation of images/s."""
    mean = statistics.fmean(rates)
    cv = statistics.pstdev(rates) / mean if len(rates) > 1 else 0.0
    return statistics.median(rates), cv


@dataclass(frozen=True)
class EnergyUse:
    """Energy of one mode's timed blocks: joules per image and average watts, or why there is none."""

    joules_per_image: Optional[float] = None
    watts: Optional[float] = None
    note: Optional[str] = None


def energy_use(blocks: TimedBlocks, settings: TimingSettings) -> EnergyUse:
    """Joules per timed image and average watts over the summed block time."""
    if blocks.joules is None:
        return EnergyUse()
    if blocks.joules <= 0:  # the counter did not tick over the window (too short for its resolution)
        return EnergyUse(note=f"the energy counter did not advance over {sum(blocks.seconds):.3g} s of timed "
                              "blocks; time more iterations")
    images = settings.batch_size * (blocks.iterations or settings.iterations) * len(blocks.seconds)
    return EnergyUse(joules_per_image=blocks.joules / images, watts=blocks.joules / sum(blocks.seconds))


def measure_throughput(step: TrainStep, settings: TimingSettings, *, image_size: int,
                       modes: tuple[str, ...] = ("train", "infer"),
                       peak_flops_per_s: float | None = None,
                       flops_per_image: tuple[int, int] | None = None,
                       energy: Union[EnergyMeter, Unavailable, None] = None,
                       alone: Callable[[], ContextManager] = contextlib.nullcontext) -> ThroughputResult:
    """Train and inference images/s; MFU when the device peak and the FLOPs per image
    (train step, forward) are known; energy when `energy` is a meter, its reason when Unavailable.
    Both modes' warm-up and timed blocks run inside `alone()`."""
    device = step.config.device
    amp = timed_precision(step.config.amp, device)
    run_amp = "off" if amp == "fp32" else amp
    meter = None if energy is None or isinstance(energy, Unavailable) else energy
    x, y = step.batch(settings.batch_size, image_size)
    runs = {"train": lambda: step.train(x, y, amp=run_amp), "infer": lambda: step.infer(x, amp=run_amp)}
    rates: dict[str, tuple[float, float]] = {}
    per_block: dict[str, tuple[float, ...]] = {}
    calls: dict[str, int] = {}
    used: dict[str, EnergyUse] = {}
    with alone():
        for mode in [mode for mode in ("train", "infer") if mode in modes]:
            blocks = time_blocks(runs[mode], settings, device, meter)
            per_block[mode] = tuple(block_rates(blocks, settings))
            rates[mode] = images_per_s(list(per_block[mode]))
            calls[mode] = blocks.iterations
            used[mode] = energy_use(blocks, settings)

    def mfu(mode: str, index: int) -> float | None:
        if mode not in rates or not peak_flops_per_s or not flops_per_image:
            return None
        return rates[mode][0] * flops_per_image[index] / peak_flops_per_s

    notes = [u.note for u in used.values() if u.note]
    note = energy.reason if isinstance(energy, Unavailable) else (notes[0] if notes else None)
    none = EnergyUse()
    return ThroughputResult(
        batch_size=settings.batch_size, timer="cuda-events" if device.type == "cuda" else "wall-clock",
        threads=torch.get_num_threads(), iterations=settings.iterations, repeats=settings.repeats,
        train_images_per_s=rates.get("train", (None, None))[0], infer_images_per_s=rates.get("infer", (None, None))[0],
        train_cv=rates.get("train", (None, None))[1], infer_cv=rates.get("infer", (None, None))[1],
        train_mfu=mfu("train", 0), infer_mfu=mfu("infer", 1), precision=amp,
        train_joules_per_image=used.get("train", none).joules_per_image,
        infer_joules_per_image=used.get("infer", none).joules_per_image,
        train_watts=used.get("train", none).watts, infer_watts=used.get("infer", none).watts,
        energy_source=meter.source if meter is not None else None, energy_note=note,
        min_block_s=settings.min_block_s, train_block_iterations=calls.get("train"),
        infer_block_iterations=calls.get("infer"), train_block_images_per_s=per_block.get("train", ()),
        infer_block_images_per_s=per_block.get("infer", ()))
