"""Is the CPU's quick timing preset steady enough to rank models? Each preset times the same models
twice (in this process, one model after another, as `compare` does), and this prints per model the
images/s of both passes with their spread, then per preset how often the two passes order a pair of
models the same way (Kendall's tau over all pairs), the median spread, and the seconds spent timing.

Presets: "old" is what `compare` used on the CPU before blocks had a minimum time (3 blocks of one
step); "quick" is results.CPU_QUICK_TIMING (5 blocks of at least 50 ms each). Run from the
repository root, ideally on an otherwise idle machine:
  .venv/bin/python benchmarks/cpu_timing.py [--models NAME ...] [--image-size 32] [--mode train|infer]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from wavemix_profile.models import get_entry
from wavemix_profile.core.results import CPU_QUICK_TIMING
from wavemix_profile.measure.throughput import TimingSettings, measure_throughput
from wavemix_profile.sources.training import StepConfig, TrainStep

DEFAULT_MODELS = ("ResNet-18", "ResNet-50", "2D FNet-64/5", "2D MLP-Mixer-64/5", "ConvMixer-256/8", "ViT-128/4x4",
                  "CCT-128/4x4", "WaveMix-16/5", "WaveMix-64/5", "WaveMix-128/7")
PRESETS = {
    "old": TimingSettings(batch_size=2, warmup=1, iterations=1, repeats=3),
    "quick": TimingSettings(batch_size=CPU_QUICK_TIMING["throughput_batch_size"], warmup=CPU_QUICK_TIMING["warmup_steps"],
                            iterations=CPU_QUICK_TIMING["timed_iterations"], repeats=CPU_QUICK_TIMING["repeats"],
                            min_block_s=CPU_QUICK_TIMING["min_block_s"]),
}


def kendall_tau(a: list[float], b: list[float]) -> float:
    """(concordant - discordant) / pairs: 1 when both passes rank every pair alike."""
    signs = [(x1 - x2) * (y1 - y2) for (x1, y1), (x2, y2) in itertools.combinations(zip(a, b), 2)]
    return sum((s > 0) - (s < 0) for s in signs) / len(signs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    args = parser.parse_args()
    config = StepConfig(device=torch.device("cpu"), amp="fp16", num_classes=100)
    steps = {name: TrainStep(get_entry(name).build(num_classes=100, image_size=args.image_size), config)
             for name in args.models}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.image_size} px, {args.mode}, "
          f"batch {PRESETS['quick'].batch_size}; images/s ±spread (coefficient of variation across blocks)")
    summary = []
    for preset, timing in PRESETS.items():
        passes, spreads, began = [], [], time.perf_counter()
        for _ in range(2):
            rates = {}
            for name, step in steps.items():
                result = measure_throughput(step, timing, image_size=args.image_size, modes=(args.mode,))
                rates[name] = getattr(result, f"{args.mode}_images_per_s")
                spreads.append(getattr(result, f"{args.mode}_cv"))
            passes.append(rates)
        seconds = time.perf_counter() - began
        for name in args.models:
            print(f"  {preset:5s} {name:20s} pass 1 {passes[0][name]:8.1f}   pass 2 {passes[1][name]:8.1f}")
        tau = kendall_tau([passes[0][n] for n in args.models], [passes[1][n] for n in args.models])
        summary.append(f"{preset:5s}: Kendall tau between passes {tau:.2f}, median spread "
                       f"{100 * statistics.median(spreads):.1f}%, max spread {100 * max(spreads):.1f}%, "
                       f"{seconds / 2:.1f} s per pass")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
