"""How long the CPU's prediction of GPU memory takes per zoo model, and, given a store of CUDA
results, how close it comes to what the GPU measured.

Per model at one image size: seconds to build the fake model and estimate one training step and
one inference pass at the batch, and seconds for the predicted max training batch within the
paper's 16 GiB. With `--store RESULTS.jsonl` holding CUDA results (`wavemix-profile validate` or
`compare` on a GPU), each row adds measured against predicted: allocated and reserved peak at the
batch, and the max training batch, with the error in percent. The goal, checked on a GPU: every
predicted peak within 10% of the measured one, every predicted max batch at most the measured one
and within 10% of it. A run without a store prints the timings only.

Run from the repository root:
  .venv/bin/python benchmarks/prediction.py [--models NAME ...] [--image-size 32] [--store reports/<gpu>/results.jsonl]
"""
from __future__ import annotations

import argparse
import time

import torch

from wavemix_profile.measure.memory import CpuEstimator
from wavemix_profile.models import PAPER_ZOO, get_entry
from wavemix_profile.measure.probes import search_max_batch
from wavemix_profile.render.paper import PAPER_BUDGET_BYTES
from wavemix_profile.core.results import Result, Settings
from wavemix_profile.store.store import Store
from wavemix_profile.sources.training import StepConfig

GOAL = 0.10   # predicted within 10% of measured


def _measured(store: str | None, model: str, size: int, batch: int) -> Result | None:
    if not store:
        return None
    found = [r for r in Store(store).read() if r.ok and r.model_name == model and r.settings.image_size == size
             and r.memory is not None and r.memory.method == "cuda-allocator" and r.memory.batch_size == batch]
    return found[-1] if found else None


def _error(predicted: float, measured: float | None) -> str:
    return "" if not measured else f"{100 * (predicted / measured - 1):+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PAPER_ZOO))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--store", default=None, help="a results.jsonl holding CUDA results to compare with")
    args = parser.parse_args(argv)
    size, batch = args.image_size, args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {batch}, {size} px, AMP fp16, "
          f"max batch within {PAPER_BUDGET_BYTES / 2**30:.0f} GiB")
    print(f"{'model':20s} {'estimate s':>10s} {'search s':>9s} {'alloc GiB':>9s} {'meas.':>7s} {'err':>7s} "
          f"{'reserv. GiB':>11s} {'meas.':>7s} {'err':>7s} {'max batch':>9s} {'meas.':>7s} {'err':>7s}  goal")
    misses = compared = 0
    for name in args.models:
        entry = get_entry(name)
        settings = Settings(model=entry.name, image_size=size, batch_size=batch, memory_budget_bytes=PAPER_BUDGET_BYTES)
        config = StepConfig.of(settings)

        def build():
            return entry.build(num_classes=settings.num_classes, image_size=size)

        began = time.perf_counter()
        estimator = CpuEstimator(build, config)
        estimate = estimator.estimate("train", batch=batch, image_size=size)
        estimated_s = time.perf_counter() - began
        began = time.perf_counter()
        found = search_max_batch(build, config, settings, mode="train", estimator=estimator)
        search_s = time.perf_counter() - began
        got = _measured(args.store, entry.name, size, batch)
        m_alloc = got.memory.peak_train_bytes if got else None
        m_reserved = got.memory.reserved_train_bytes if got else None
        m_batch = got.max_batch_train.max_batch if got and got.max_batch_train else None
        verdict = ""
        if got:
            compared += 1
            ok = (abs(estimate.allocated_bytes / m_alloc - 1) <= GOAL
                  and (m_reserved is None or abs(estimate.reserved_bytes / m_reserved - 1) <= GOAL)
                  and (m_batch is None or m_batch * (1 - GOAL) <= found.max_batch <= m_batch))
            misses += not ok
            verdict = "met" if ok else "MISSED"

        def gib(n):
            return "" if n is None else f"{n / 2**30:.3f}"

        print(f"{entry.name:20s} {estimated_s:10.2f} {search_s:9.2f} {gib(estimate.allocated_bytes):>9s} "
              f"{gib(m_alloc):>7s} {_error(estimate.allocated_bytes, m_alloc):>7s} {gib(estimate.reserved_bytes):>11s} "
              f"{gib(m_reserved):>7s} {_error(estimate.reserved_bytes, m_reserved):>7s} {found.max_batch:>9,} "
              f"{'' if m_batch is None else f'{m_batch:,}':>7s} {_error(found.max_batch, m_batch):>7s}  {verdict}",
              flush=True)
    if compared:
        print(f"goal met for {compared - misses} of {compared} models with CUDA results")
    else:
        print("no CUDA results compared (pass --store with a GPU's results.jsonl)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
