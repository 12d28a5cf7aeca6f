"""How close the GPU-less predictions come to GPU measurements others have published.

Each source is a CSV in benchmarks/data/ that says where it comes from, its licence and how it was
measured; every row is predicted here under that protocol (the same GPU, precision, optimizer,
gradient handling, classes, image size and model code):

  timm   timm's benchmark.py on an RTX 3090, AMP: the largest training batch that ran, down the
         sequence 512, 384, 256, 192, ... A prediction is inside when it lies in the measured bracket
         [listed batch, next larger of the sequence), optimistic (unsafe: it names a batch that ran out of
         memory) at or above the bracket's top, pessimistic below its bottom. Attention runs explicitly,
         as timm's code of 2022 did (timm.layers.set_fused_attn(False)): no fused kernel then.
  monet  MONeT's PyTorch baseline: max_memory_allocated of fp32 training steps without an optimizer.
         Inside within 5% of the measured bytes; optimistic (unsafe) below that, pessimistic above.
         It ran torch 1.5, whose autograd kept the output of an in-place ReLU6 for its backward; torch 2.x
         clones the input (hardtanh_'s formula reads it), which MobileNetV2's blocks pay for.
  paper  the WaveMix paper's largest batches on its 16 GB V100 (Tables 4 and 6): Adam, CIFAR-100 (Table
         6) or ImageNet-1k (Table 4) heads, the V100-SXM2-16GB with CUDA 11.3, and the precision and
         inference `wavemix-profile paper-fit` finds its numbers match: fp32 (AMP off) and inference
         recording autograd's graph. The paper says it trained with AMP, but its memory and batches are
         those of fp32 steps (AMP makes every batch here 2-4 times larger). Neither its precision nor how
         it read memory or searched is published, and no single protocol reproduces its tables (paper-fit
         scores them), so these rows are shown with their ratio and no verdict, and count in no unsafe rate.

For each row it prints the measurement, the prediction, the verdict and the seconds the prediction took
(building the model, the estimates and the search; one row at a time unless --jobs); for timm rows
also the tensors at the answer, the caching allocator's reserved bytes there on a GPU with room to
spare and the least device memory the step needs, whose difference is the cache a full GPU releases.
Per source: the median predicted / measured and the unsafe rate (optimistic rows / rows).

Run from the repository root:
  .venv/bin/python benchmarks/external_accuracy.py [--sources timm monet paper] [--models NAME ...] [--jobs 2]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DATA = Path(__file__).parent / "data"
# timm.utils.decay_batch_step from 512: a listed batch's bracket ends at the next larger one
TIMM_SEQUENCE = (512, 384, 256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1)
BYTES_TOLERANCE = 0.05
GIB = 2**30
# The command line's whole max-batch run (both modes) on base-size timm models at 224 px, start to end.
CLI_TIMED = ("timm:vit_base_patch16_224", "timm:convnext_base")
CLI_GOAL_S = 30


@dataclass(frozen=True)
class Row:
    source: str
    model: str               # a spec wavemix-profile resolves
    label: str               # as the source names it
    image_size: int
    measured: float          # images (a max batch) or bytes (a peak)
    unit: str                # "images" or "bytes"
    settings: dict           # Settings fields of the matching prediction
    bracket_top: Optional[int] = None   # timm: the next larger batch of its sequence (None: 512, no top)


@dataclass(frozen=True)
class Outcome:
    row: Row
    predicted: float
    seconds: float
    tensors_bytes: Optional[int] = None
    reserved_bytes: Optional[int] = None
    needed_bytes: Optional[int] = None

    @property
    def ratio(self) -> float:
        return self.predicted / self.row.measured

    @property
    def verdict(self) -> str:
        row, p = self.row, self.predicted
        if row.source == "timm":
            low, high = row.measured, row.bracket_top
        elif row.source == "monet":
            low, high = row.measured * (1 - BYTES_TOLERANCE), row.measured * (1 + BYTES_TOLERANCE)
            # a memory figure is unsafe when it is too low, a batch when it is too high
            return "optimistic" if p < low else "pessimistic" if p > high else "inside"
        else:   # the paper's: its protocol is not published
            return "not judged"
        return "pessimistic" if p < low else "optimistic" if high is not None and p >= high else "inside"


def _data(name: str) -> list[dict]:
    with open(DATA / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def timm_rows() -> list[Row]:
    rows = []
    for r in _data("timm_train_rtx3090.csv"):
        batch = int(r["train_batch_size"])
        top = TIMM_SEQUENCE[TIMM_SEQUENCE.index(batch) - 1] if batch != TIMM_SEQUENCE[0] else None
        settings = dict(amp="fp16", optimizer="sgd-momentum", keep_grads=True, num_classes=1000,
                        target_gpu="RTX 3090", target_cuda="11.3", max_batch_modes=("train",))
        rows.append(Row("timm", f"timm:{r['model']}", r["model"], int(r["train_img_size"]), batch, "images", settings,
                        top))
    return rows


def monet_rows() -> list[Row]:
    return [Row("monet", f"torchvision:{r['model']}", r["model"], int(r["image_size"]),
                float(r["max_memory_allocated_gib"]) * GIB, "bytes",
                dict(amp="off", optimizer="none", keep_grads=True, num_classes=1000, batch_size=int(r["batch_size"])))
            for r in _data("monet_pytorch_baseline.csv")]


def paper_rows() -> list[Row]:
    from wavemix_profile.models import paper_values
    rows = []
    for v in paper_values():
        if v.table not in (4, 6) or not v.metric.startswith("max_batch"):
            continue
        mode = v.metric.removeprefix("max_batch_")
        rows.append(Row("paper", v.model, f"{v.model} (Table {v.table})", v.image_size, v.value, "images",
                        dict(amp="off", inference="autograd", optimizer="adam",
                             num_classes=1000 if v.table == 4 else 100, target_gpu="V100-SXM2-16GB",
                             target_cuda="11.3", max_batch_modes=(mode,))))
    return rows


SOURCES = {"timm": timm_rows, "monet": monet_rows, "paper": paper_rows}


def predict(row: Row) -> Outcome:
    """The prediction for one row, in this process, timed from the model's build to the answer."""
    os.environ["CUDA_MODULE_LOADING"] = "EAGER"   # CUDA 11.3 had no lazy loading
    import torch
    if row.source == "timm":
        from timm.layers import set_fused_attn
        set_fused_attn(False)
    from wavemix_profile.core.gpus import card_budget
    from wavemix_profile.measure.memory import CpuEstimator
    from wavemix_profile.measure.probes import device_fit, search_max_batch
    from wavemix_profile.core.results import Settings
    from wavemix_profile.sources.sources import resolve_source
    from wavemix_profile.sources.training import StepConfig
    torch.set_num_threads(int(os.environ.get("EXTERNAL_THREADS", torch.get_num_threads())))
    settings = Settings(model=row.model, image_size=row.image_size, **row.settings)
    if settings.target_gpu:   # what the command line does: the named card's memory is the budget
        settings = dataclasses.replace(settings, memory_budget_bytes=card_budget(settings.target_gpu))
    source = resolve_source(row.model)
    began = time.perf_counter()
    estimator = CpuEstimator(lambda: source.build(num_classes=settings.num_classes, image_size=row.image_size),
                             StepConfig.of(settings))
    if row.unit == "bytes":
        estimate = estimator.estimate("train", batch=settings.batch_size, image_size=row.image_size)
        return Outcome(row, estimate.allocated_bytes, time.perf_counter() - began)
    [mode] = settings.max_batch_modes
    found = search_max_batch(None, StepConfig.of(settings), settings, mode=mode, estimator=estimator)
    seconds = time.perf_counter() - began
    if not found.max_batch:
        return Outcome(row, 0, seconds)
    at = estimator.estimate(mode, batch=found.max_batch, image_size=row.image_size)
    fit = device_fit(settings, mode)
    return Outcome(row, found.max_batch, seconds, at.allocated_bytes, at.reserved_bytes,
                   fit.needed_bytes(at) - fit.overheads.row.outside_allocator_bytes)


def _show(o: Outcome) -> str:
    row = o.row
    if row.unit == "bytes":
        measured, predicted = f"{row.measured / GIB:.2f} GiB", f"{o.predicted / GIB:.2f} GiB"
    else:
        measured = f"{row.measured:.0f}" + (f"..{row.bracket_top - 1}" if row.bracket_top else
                                            "+" if row.source == "timm" else "")
        predicted = f"{o.predicted:.0f}"
    gap = ""
    if o.tensors_bytes and o.reserved_bytes and o.needed_bytes:
        gap = (f"  tensors {o.tensors_bytes / GIB:5.2f}, reserved with room {o.reserved_bytes / GIB:5.2f} "
               f"(+{(o.reserved_bytes - o.tensors_bytes) / GIB:.2f}), allocator needs {o.needed_bytes / GIB:5.2f} "
               f"(+{(o.needed_bytes - o.tensors_bytes) / GIB:.2f}) GiB")
    return (f"{row.label:32s} {row.image_size:4d} {measured:>14s} {predicted:>12s} {o.ratio:6.2f} {o.verdict:12s} "
            f"{o.seconds:6.1f}{gap}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--models", nargs="+", default=None, help="only these rows (as their source names them)")
    parser.add_argument("--jobs", type=int, default=1, help="predictions at once (the seconds are then contended)")
    parser.add_argument("--no-cli-timing", action="store_true",
                        help="leave out the timing of the command line's max-batch on base-size timm models")
    args = parser.parse_args(argv)
    rows = [r for name in args.sources for r in SOURCES[name]() if not args.models or r.label in args.models
            or r.model in args.models]
    import torch
    print(f"torch {torch.__version__}; {len(rows)} rows; {args.jobs} at once; "
          f"seconds: the prediction's wall time{' (contended)' if args.jobs > 1 else ''}")
    print(f"{'row':32s} {'px':>4s} {'measured':>14s} {'predicted':>12s} {'ratio':>6s} {'verdict':12s} {'s':>6s}")
    env = {"EXTERNAL_THREADS": str(max(1, torch.get_num_threads() // args.jobs))}
    os.environ.update(env)
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for outcome in pool.map(predict, rows):
            print(_show(outcome), flush=True)
            outcomes.append(outcome)
    print()
    for source in dict.fromkeys(o.row.source for o in outcomes):
        mine = [o for o in outcomes if o.row.source == source]
        median = f"median predicted / measured {statistics.median(o.ratio for o in mine):.2f}"
        slowest = f"slowest prediction {max(o.seconds for o in mine):.1f} s"
        if all(o.verdict == "not judged" for o in mine):
            print(f"{source}: {len(mine)} rows, not judged (protocol not published); {median}; {slowest}")
            continue
        counts = {v: sum(o.verdict == v for o in mine) for v in ("inside", "optimistic", "pessimistic")}
        print(f"{source}: {len(mine)} rows, " + ", ".join(f"{n} {v}" for v, n in counts.items())
              + f"; {median}; unsafe rate {counts['optimistic'] / len(mine):.0%}; {slowest}")
    if not args.no_cli_timing:
        print()
        for model in CLI_TIMED:
            command = ["wavemix-profile", "max-batch", model, "--image-size", "224", "--target-gpu", "RTX 4090"]
            began = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "wavemix_profile", *command[1:]], capture_output=True, text=True)
            wall = time.perf_counter() - began
            print(f"`{' '.join(command)}`: {wall:.1f} s wall, exit {run.returncode} (goal: under {CLI_GOAL_S} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
