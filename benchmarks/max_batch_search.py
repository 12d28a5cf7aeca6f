"""Probes used by the model-guided max-batch search against doubling-then-bisection, on synthetic curves.

Each curve is a model's peak training memory as a function of batch size under a 16 GiB budget, built
so that the true maximum batch is known exactly. A probe "fits" when the true peak is within budget and
reports a peak (exact, or with noise) the way the GPU probe does. Probes are the cost that matters:
each one is a full training step on the GPU, so wall time here would say nothing.

Run from the repository root:  .venv/bin/python benchmarks/max_batch_search.py
"""
from __future__ import annotations

import random
import statistics
import sys
from dataclasses import dataclass
from typing import Callable

from wavemix_profile.measure.maxbatch import ProbeOutcome, doubling_bisection, find_max_batch

COMMAND = ".venv/bin/python benchmarks/max_batch_search.py"
BUDGET_BYTES = 16 * 2**30
TRUE_MAXIMA = (8, 20, 64, 100, 384, 1000, 2176, 5000, 12345, 50000)
STEP_BYTES = 64 * 2**20         # coarse steps: allocator segments and cuDNN workspaces, much above 2 MiB blocks
NOISE_FRACTION = 0.005          # noisy: reported peak off by a normal error of 0.5% of itself (one sigma)
SUBLINEAR_POWER = 0.8
KINDS = ("affine", "steps", "noisy", "sub-linear")
SPREAD_SEEDS = range(20)


@dataclass(frozen=True)
class Curve:
    """One synthetic memory curve with a known largest fitting batch."""

    name: str
    true_max: int
    true_peak: Callable[[int], int]         # bytes; decides whether a batch fits
    reported_peak: Callable[[int], int]     # bytes; what the probe says it used

    def probe(self, batch: int) -> ProbeOutcome:
        fits = self.true_peak(batch) <= BUDGET_BYTES
        return ProbeOutcome(batch=batch, fits=fits, peak_bytes=self.reported_peak(batch) if fits else None)


def _affine_parts(true_max: int, rng: random.Random) -> tuple[int, int]:
    """(fixed bytes, per-image bytes) with fixed + per_image * true_max <= budget < ... * (true_max + 1)."""
    fixed_fraction = rng.uniform(0.02, 0.3)
    per_image = int(BUDGET_BYTES * (1 - fixed_fraction) / true_max)
    fixed = BUDGET_BYTES - per_image * true_max - rng.randrange(per_image)
    return fixed, per_image


def make_curve(kind: str, true_max: int, seed: int) -> Curve:
    curve = _build(kind, true_max, seed)
    assert curve.true_peak(true_max) <= BUDGET_BYTES < curve.true_peak(true_max + 1), (kind, true_max)
    return curve


def _build(kind: str, true_max: int, seed: int) -> Curve:
    rng = random.Random(seed)
    fixed, per_image = _affine_parts(true_max, rng)

    def affine(b: int) -> int:
        return fixed + per_image * b

    if kind == "affine":
        return Curve(kind, true_max, affine, affine)
    if kind == "steps":
        # BUDGET_BYTES is a whole number of steps, so rounding up keeps the same true maximum.
        def stepped(b: int) -> int:
            return -(-affine(b) // STEP_BYTES) * STEP_BYTES
        return Curve(kind, true_max, stepped, stepped)
    if kind == "noisy":
        def noisy(b: int) -> int:
            return round(affine(b) * (1 + rng.gauss(0.0, NOISE_FRACTION)))
        return Curve(kind, true_max, affine, noisy)
    if kind == "sub-linear":
        # Half a batch past the maximum lands exactly on the budget, so float rounding cannot move it.
        scale = (BUDGET_BYTES - fixed) / (true_max + 0.5) ** SUBLINEAR_POWER

        def concave(b: int) -> int:
            return int(fixed + scale * b ** SUBLINEAR_POWER)
        return Curve(kind, true_max, concave, concave)
    raise ValueError(kind)


def compare(kind: str, true_max: int, seed: int) -> tuple[int, int, bool]:
    """(probes used by ours, probes used by the baseline, both answers right) on one curve."""
    ours = find_max_batch(make_curve(kind, true_max, seed).probe, budget_bytes=BUDGET_BYTES)
    base = doubling_bisection(make_curve(kind, true_max, seed).probe)
    return ours.n_probes, base.n_probes, ours.max_batch == base.max_batch == true_max


def main() -> int:
    print(f"$ {COMMAND}")
    print(f"budget {BUDGET_BYTES / 2**30:.0f} GiB; steps of {STEP_BYTES // 2**20} MiB; noise sigma "
          f"{NOISE_FRACTION:.1%} of the peak; sub-linear peak ~ batch^{SUBLINEAR_POWER}; multiple_of 1\n")
    print(f"{'curve':<11} {'true max':>8} {'ours':>5} {'baseline':>8}  both correct")
    ours_counts, base_counts, wrong = [], [], 0
    for kind in KINDS:
        for i, true_max in enumerate(TRUE_MAXIMA):
            ours, base, correct = compare(kind, true_max, i)
            ours_counts.append(ours)
            base_counts.append(base)
            wrong += not correct
            print(f"{kind:<11} {true_max:>8} {ours:>5} {base:>8}  {'yes' if correct else 'NO'}")
    ours_median, base_median = statistics.median(ours_counts), statistics.median(base_counts)
    print(f"\nmedian probes: ours {ours_median:g}, baseline {base_median:g}, "
          f"ratio {ours_median / base_median:.2f} (target <= 0.50); wrong answers: {wrong}")

    # One seed per row can flatter; the same curves over more seeds show the spread.
    print(f"\nover {len(SPREAD_SEEDS)} seeds per curve and true max:")
    print(f"{'curve':<11} {'ours mean':>9} {'ours worst':>10} {'baseline mean':>13} {'worst ours/baseline':>19}  wrong")
    for kind in KINDS:
        runs = [compare(kind, true_max, 1000 + seed) for true_max in TRUE_MAXIMA for seed in SPREAD_SEEDS]
        wrong += sum(not ok for _, _, ok in runs)
        print(f"{kind:<11} {statistics.mean(o for o, _, _ in runs):>9.1f} {max(o for o, _, _ in runs):>10} "
              f"{statistics.mean(b for _, b, _ in runs):>13.1f} {max(o / b for o, b, _ in runs):>19.2f}  "
              f"{sum(not ok for _, _, ok in runs)}")
    return 1 if wrong or ours_median > base_median / 2 else 0


if __name__ == "__main__":
    sys.exit(main())
