"""Native Haar DWT vs pytorch_wavelets inside WaveMix, on the CPU: training and inference images/s.

For each model both backends are built with the same weights and timed interleaved (native,
reference, native, ...) after warm-up, so drift in a shared machine's load hits both alike.
Training = forward, cross-entropy on random labels, backward, Adam step (section 4.3's settings:
lr 1e-3, weight decay 0.01); inference = eval-mode forward under torch.inference_mode. Float32,
no autocast. Reported: median images/s over the timed iterations, and native / pytorch_wavelets;
then the same for the first block's HaarDWT alone, which bounds what the backend can change.

    python benchmarks/dwt.py                      # WaveMix-128/7 and WaveMix-32/5, 32 px, batch 64
    python benchmarks/dwt.py --batch 32 --iters 9 --models WaveMix-16/5
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from wavemix_profile.models import create_model
from wavemix_profile.models.dwt import HaarDWT

BACKENDS = ("native", "pytorch_wavelets")


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    image_size: int
    batch: int
    warmup: int
    iters: int


@dataclass(frozen=True)
class Row:
    model: str
    train_images_per_s: dict[str, float]  # backend -> median images/s
    infer_images_per_s: dict[str, float]


def _train_step(model: torch.nn.Module, images: torch.Tensor,
                labels: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=0.01)

    def step() -> None:
        model.train()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def _inference(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.inference_mode():
            model(images)
    return run


def time_interleaved(runs: dict[str, Callable[[], None]], *, warmup: int,
                     iters: int) -> dict[str, float]:
    """Median seconds per call of each run, alternating which goes first every iteration."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for _ in range(iters):
        for name in order:
            begin = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - begin)
        order.reverse()
    return {name: statistics.median(s) for name, s in seconds.items()}


def measure(name: str, settings: Settings) -> Row:
    torch.manual_seed(0)
    models = {b: create_model(name, num_classes=100, image_size=settings.image_size,
                              dwt_backend=b) for b in BACKENDS}
    weights = models["native"].state_dict()
    models["pytorch_wavelets"].load_state_dict(weights)
    images = torch.randn(settings.batch, 3, settings.image_size, settings.image_size)
    labels = torch.randint(0, 100, (settings.batch,))
    train = time_interleaved({b: _train_step(m, images, labels) for b, m in models.items()},
                             warmup=settings.warmup, iters=settings.iters)
    infer = time_interleaved({b: _inference(m, images) for b, m in models.items()},
                             warmup=settings.warmup, iters=settings.iters)
    return Row(name, {b: settings.batch / s for b, s in train.items()},
               {b: settings.batch / s for b, s in infer.items()})


def measure_dwt_alone(name: str, settings: Settings) -> Row:
    """The first block's HaarDWT by itself: forward + backward ("train") and forward ("infer")."""
    model = create_model(name, num_classes=100, image_size=settings.image_size)
    block = model.blocks[0]
    x = block.reduce(model.stem(torch.randn(settings.batch, 3, settings.image_size,
                                            settings.image_size))).detach()
    dwts = {b: HaarDWT(levels=block.dwt.levels, backend=b) for b in BACKENDS}

    def train(dwt: HaarDWT) -> Callable[[], None]:
        leaf = x.clone().requires_grad_(True)
        return lambda: sum(level.sum() for level in dwt(leaf)).backward()

    def infer(dwt: HaarDWT) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                dwt(x)
        return run

    timed = {mode: time_interleaved({b: make(d) for b, d in dwts.items()},
                                    warmup=settings.warmup, iters=4 * settings.iters)
             for mode, make in (("train", train), ("infer", infer))}
    label = f"{name}: HaarDWT alone, {tuple(x.shape)}, {block.dwt.levels} level(s)"
    return Row(label, {b: settings.batch / s for b, s in timed["train"].items()},
               {b: settings.batch / s for b, s in timed["infer"].items()})


def render(rows: list[Row]) -> str:
    """A Markdown table: images/s per mode and backend, and native / pytorch_wavelets."""
    header = ["model", "train img/s native", "train img/s pytorch_wavelets", "train ratio",
              "infer img/s native", "infer img/s pytorch_wavelets", "infer ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for row in rows:
        cells = [row.model]
        for rates in (row.train_images_per_s, row.infer_images_per_s):
            cells += [f"{rates['native']:.1f}", f"{rates['pytorch_wavelets']:.1f}",
                      f"{rates['native'] / rates['pytorch_wavelets']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["WaveMix-128/7", "WaveMix-32/5"])
    parser.add_argument("--image-size", type=int, default=32, help="square input, pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per backend")
    parser.add_argument("--iters", type=int, default=12, help="timed calls per backend")
    args = parser.parse_args(argv)
    settings = Settings(tuple(args.models), args.image_size, args.batch, args.warmup, args.iters)

    # relative to the working folder, so a pasted figure names no path of this machine
    print("command: " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, float32; "
          f"batch {settings.batch}, {settings.image_size} px, {settings.warmup} warm-up + "
          f"{settings.iters} timed calls per backend, interleaved; median images/s")
    rows, alone = [], []
    for name in settings.models:
        begin = time.perf_counter()
        rows.append(measure(name, settings))
        alone.append(measure_dwt_alone(name, settings))
        print(f"  {name}: measured in {time.perf_counter() - begin:.0f} s", file=sys.stderr)
    print(render(rows))
    # The whole-model ratio is bounded by the DWT's share of the step; this shows the DWT itself.
    print("\nThe DWT alone (one block's worth; 'train' = forward + backward):")
    print(render(alone))


if __name__ == "__main__":
    main()
