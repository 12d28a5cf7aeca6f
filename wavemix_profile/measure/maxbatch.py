"""The largest batch that fits a memory budget (the paper's Tables 4 and 6): a pure search over a probe.

A probe `fits(batch)` runs one step at `batch` images and says whether it fitted, optionally with the
peak bytes it used. Probes are assumed monotone: if a batch fits, every smaller one does. The caller
runs the model and times the search; nothing here imports torch. Batches are images, memory is bytes.
A caller that can guess a probe's outcome far more cheaply than it runs one passes that guess as
`predict`: the search is then run on guesses and only its answer is probed for real.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Mapping, Optional, Union

from ..core.errors import BadInputError
from ..core.results import ProbeRecord

# The stored record itself, so a search's probes go into a MaxBatchResult unconverted.
ProbeOutcome = ProbeRecord
Probe = Callable[[int], Union[ProbeOutcome, bool]]
# A cheap guess at a probe's outcome, or None while it cannot guess (see find_max_batch).
Predictor = Callable[[int], Optional[ProbeOutcome]]

# Tuned on benchmarks/max_batch_search.py (synthetic affine, stepped, noisy and sub-linear curves).
MAX_BATCH_LIMIT = 1_000_000    # images; a search that still fits here stops and says the answer is capped
_LOCAL_POINTS = 3              # the line runs through the largest fitting batches: curvature below is ignored
_Z_MARGIN = 2.0                # climb targets stop this many standard errors short of the boundary
_FIRST_JUMP_SHORTFALL = 0.1    # two points leave no residual to judge by: stop short by this share of the way
_BRACKET_EDGE = 1 / 8          # a guided probe keeps this share of the bracket on either side of it
_GALLOP_GROWTH = 4             # past the boundary and still fitting: each step past it this much longer
_FLAT_GROWTH = 4               # peaks not growing yet mean a tiny per-image cost: the boundary is far


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a max-batch search; wall time is the caller's to record."""

    max_batch: int                      # images; 0 when the smallest batch does not fit
    probes: tuple[ProbeOutcome, ...]    # in the order they ran; no batch twice
    capped: bool                        # the limit itself fitted, so the true maximum may be larger
    method: str                         # "model-guided", "model-guided, replayed" or "doubling"

    @property
    def n_probes(self) -> int:
        return len(self.probes)


@dataclass(frozen=True)
class Prediction:
    """Largest batch whose affine-predicted peak (fixed + per_image * batch) fits a budget."""

    max_batch: int                  # images, a multiple of multiple_of; 0 if the fixed part alone is over
    fixed_bytes: float              # intercept: weights, gradients, optimizer state, workspaces
    per_image_bytes: float          # slope: activations kept per image
    predicted_peak_bytes: int       # fixed_bytes + per_image_bytes * max_batch, rounded
    budget_bytes: int


@dataclass(frozen=True)
class _Fit:
    """Least-squares line through (batch, peak bytes), exact in rationals."""

    fixed: Fraction
    slope: Fraction
    n: int
    residual_bytes: float       # residual standard deviation; 0 for two points
    spread_sq: Fraction         # sum of squared batch deviations from their mean (Sxx)


def _fit(peaks: Mapping[int, int]) -> _Fit:
    xs = [Fraction(b) for b in peaks]
    ys = [Fraction(p) for p in peaks.values()]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else Fraction(0)
    fixed = my - slope * mx
    rss = sum((y - fixed - slope * x) ** 2 for x, y in zip(xs, ys))
    residual = math.sqrt(rss / (n - 2)) if n > 2 else 0.0
    return _Fit(fixed=fixed, slope=slope, n=n, residual_bytes=residual, spread_sq=sxx)


def predict_max_batch(peaks: Mapping[int, int], budget_bytes: int, *, multiple_of: int = 1) -> Prediction:
    """Fit peak bytes = fixed + per_image * batch to measured (batch -> peak bytes) by least squares.

    Returns the largest multiple of `multiple_of` whose fitted peak is at most `budget_bytes`. Raises
    ValueError for fewer than two distinct batch sizes or a slope that is not positive.
    """
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be at least 1, got {multiple_of}")
    if len(peaks) < 2:
        raise ValueError(f"need peak bytes at two or more distinct batch sizes to fit a line, got {sorted(peaks)}")
    fit = _fit(peaks)
    if fit.slope <= 0:
        raise ValueError(f"peak bytes do not grow with batch size (fitted {float(fit.slope):.0f} bytes/image) "
                         f"in {dict(sorted(peaks.items()))}; cannot extrapolate")
    best = max(0, math.floor((budget_bytes - fit.fixed) / fit.slope / multiple_of)) * multiple_of
    return Prediction(max_batch=best, fixed_bytes=float(fit.fixed), per_image_bytes=float(fit.slope),
                      predicted_peak_bytes=round(fit.fixed + fit.slope * best), budget_bytes=budget_bytes)


class _NoPrediction(Exception):
    """The predictor cannot guess yet: the search takes a real step instead."""


class _Bracket:
    """The probes run so far and what they decide: batch `lo` fits and batch `hi` does not.

    Only batches strictly between lo and hi are ever probed; monotonicity decides every other one, so
    no batch runs twice. lo = 0 until something fits; hi = cap + step until something fails.
    """

    def __init__(self, fits: Probe, step: int, cap: int):
        self._fits, self.step, self.cap = fits, step, cap
        self.lo, self.hi = 0, cap + step
        self.outcomes: list[ProbeOutcome] = []

    @property
    def done(self) -> bool:
        return self.hi - self.lo <= self.step

    @property
    def failed(self) -> bool:
        return self.hi <= self.cap

    def peaks(self) -> dict[int, int]:
        return {o.batch: o.peak_bytes for o in self.outcomes if o.fits and o.peak_bytes is not None}

    def inside(self, batch: float) -> int:
        """Nearest multiple of step at or below `batch` that is still undecided."""
        return min(max(math.floor(batch / self.step) * self.step, self.lo + self.step), self.hi - self.step)

    def probe(self, batch: int) -> None:
        assert self.lo < batch < self.hi and batch % self.step == 0, (batch, self.lo, self.hi)
        raw = self._fits(batch)
        outcome = raw if isinstance(raw, ProbeOutcome) else ProbeOutcome(batch=batch, fits=bool(raw))
        if outcome.batch != batch:
            raise ValueError(f"probe asked for batch {batch} reported batch {outcome.batch}")
        self.outcomes.append(outcome)
        if outcome.fits:
            self.lo = batch
        else:
            self.hi = batch

    def imagined(self, predict: Predictor) -> "_Bracket":
        """This bracket and its probes so far, probing `predict` from here on: a search run on it costs
        no real probe. Its probes raise _NoPrediction where predict cannot guess."""
        def guess(batch: int) -> ProbeOutcome:
            outcome = predict(batch)
            if outcome is None:
                raise _NoPrediction(batch)
            return outcome

        twin = _Bracket(guess, self.step, self.cap)
        twin.lo, twin.hi, twin.outcomes = self.lo, self.hi, list(self.outcomes)
        return twin

    def bisect(self) -> None:
        while not self.done:
            self.probe(self.lo + (self.hi - self.lo) // self.step // 2 * self.step)

    def result(self, method: str) -> SearchResult:
        return SearchResult(max_batch=self.lo, probes=tuple(self.outcomes), capped=self.lo == self.cap,
                            method=method)


def _domain(multiple_of: int, start: int, limit: int) -> tuple[int, int]:
    """(first batch to probe, largest batch allowed), both multiples of multiple_of."""
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be at least 1, got {multiple_of}")
    cap = limit // multiple_of * multiple_of
    if cap < multiple_of:
        raise ValueError(f"limit {limit} is below the smallest batch {multiple_of}")
    first = max(multiple_of, -(-start // multiple_of) * multiple_of)
    return min(first, cap), cap


def _double_then_bisect(br: _Bracket, first: int) -> None:
    while not br.done and not br.failed:
        br.probe(min(2 * br.lo, br.cap) if br.lo else first)
    br.bisect()


def doubling_bisection(fits: Probe, *, multiple_of: int = 1, start: int = 1,
                       limit: int = MAX_BATCH_LIMIT) -> SearchResult:
    """Baseline search: double the batch from `start` until a probe fails, then bisect (batches in images).

    The binsearch mode of PyTorch Lightning's BatchSizeFinder, made exact and never probing twice.
    """
    first, cap = _domain(multiple_of, start, limit)
    br = _Bracket(fits, multiple_of, cap)
    _double_then_bisect(br, first)
    return br.result("doubling")


@dataclass(frozen=True)
class _Line:
    """The fitted line's reading of the boundary, in images."""

    boundary: float                 # largest batch predicted to fit; inf while peaks do not grow
    uncertainty: Optional[float]    # standard errors of that prediction, scaled; None from two points


def _read_line(peaks: Mapping[int, int], budget: int) -> _Line:
    """Fit the largest few fitting batches and extrapolate from the top one's own peak.

    Anchoring on the top point and fitting locally keeps curvature far below the boundary from biasing
    the prediction; the residuals of the local fit, grown by how far it extrapolates, size its error.
    """
    local = sorted(peaks)[-_LOCAL_POINTS:]
    fit = _fit({b: peaks[b] for b in local})
    if fit.slope <= 0:
        # Close points can share one allocator step; the whole range still shows the growth.
        fit = _fit(peaks)
    if fit.slope <= 0:
        return _Line(math.inf, None)
    top = local[-1]
    gap = float((budget - peaks[top]) / fit.slope)
    if fit.n < 3:
        return _Line(top + gap, None)
    stretch = math.sqrt(1 + gap * gap / float(fit.spread_sq))
    return _Line(top + gap, _Z_MARGIN * fit.residual_bytes / float(fit.slope) * stretch)


class _Guide:
    """Picks each next probe from the line through the measured peaks; see find_max_batch."""

    def __init__(self, br: _Bracket, budget: int):
        self.br, self.budget = br, budget
        self.reach = 0.0        # last step past the boundary; grows, so a biased line still gets past it
        self.trusted = True     # in the bracket, until the line mispredicts a probe it chose
        self.widths: list[int] = []

    def climb(self, peaks: Mapping[int, int]) -> int:
        """Nothing has failed yet: jump to just below the predicted boundary, or step past it."""
        br, top = self.br, max(peaks)
        if len(peaks) == 1:
            # Where the budget would run out if all memory were per-image: a lower bound on the boundary
            # whenever the fixed part is non-negative and the curve is not convex.
            return br.inside(max(2 * top, top * self.budget / peaks[top]) if peaks[top] > 0 else 2 * top)
        line = _read_line(peaks, self.budget)
        if not math.isfinite(line.boundary):
            return br.inside(top * _FLAT_GROWTH)
        u = line.uncertainty
        target = line.boundary - (_FIRST_JUMP_SHORTFALL * (line.boundary - top) if u is None else u)
        if target - br.lo >= max(br.step, u or 0.0):
            return br.inside(target)
        self.reach = max(line.boundary + (u or 0.0) - br.lo, _GALLOP_GROWTH * self.reach, br.step)
        return br.inside(br.lo + math.ceil(self.reach / br.step) * br.step)

    def close_in(self, peaks: Mapping[int, int]) -> tuple[int, Optional[_Line]]:
        """Bracketed: aim at the boundary while the line keeps being right, else bisect."""
        br = self.br
        width = br.hi - br.lo
        self.widths.append(width)
        # Every two probes must halve the bracket, or the next one bisects: never much worse than bisection.
        stalled = len(self.widths) >= 3 and width > self.widths[-3] / 2
        line = _read_line(peaks, self.budget) if len(peaks) > 1 else None
        if (stalled or not self.trusted or line is None or line.uncertainty is None
                or not br.lo < line.boundary < br.hi):
            return br.inside((br.lo + br.hi) / 2), None
        edge = _BRACKET_EDGE * width
        return br.inside(min(max(line.boundary, br.lo + edge), br.hi - edge)), line

    def judge(self, batch: int, line: _Line) -> None:
        fitted, u = self.br.lo == batch, line.uncertainty
        self.trusted = batch <= line.boundary + u if fitted else batch > line.boundary - u

    def step(self) -> None:
        """Probe the next batch the line picks: climbing until something fails, then closing in."""
        br = self.br
        if not br.failed:
            br.probe(self.climb(br.peaks()))
            return
        batch, line = self.close_in(br.peaks())
        br.probe(batch)
        if line is not None:
            self.judge(batch, line)


def _guided(br: _Bracket, budget: int) -> None:
    """Climb on predictions, step past the boundary, close in; needs a fitting probe with peak bytes."""
    guide = _Guide(br, budget)
    while not br.done:
        guide.step()


def _replayed(br: _Bracket, budget: int, predict: Predictor) -> bool:
    """The guided search run on `predict`'s guesses, its answer c then confirmed by real probes of c
    and of c + step. True when both agreed with the guesses: the bracket is then closed by real
    probes, as exact as a search on real probes alone. False after a disagreement: the guesses are
    dropped and the guided search finishes on real probes. Where predict cannot guess yet, one real
    guided step is taken and it is asked again."""
    guide = _Guide(br, budget)
    while not br.done:
        twin = br.imagined(predict)
        try:
            _guided(twin, budget)
        except _NoPrediction:
            guide.step()
            continue
        guessed = {o.batch: o.fits for o in twin.outcomes}
        for batch in (twin.lo, twin.hi):
            if br.lo < batch < br.hi:
                br.probe(batch)
                if br.outcomes[-1].fits != guessed[batch]:
                    return False
        return True
    return False


def find_max_batch(fits: Probe, *, budget_bytes: Optional[int] = None, multiple_of: int = 1, start: int = 1,
                   limit: int = MAX_BATCH_LIMIT, predict: Optional[Predictor] = None) -> SearchResult:
    """Largest batch (images, a multiple of `multiple_of`, at most `limit`) for which `fits` holds.

    Exact for monotone probes: `fits(max_batch)` and not `fits(max_batch + multiple_of)`, or 0 when the
    smallest batch fails, or the limit (capped=True) when it fits. When probes report peak bytes and
    `budget_bytes` is known, a line through the measured peaks predicts the boundary and the search jumps
    to just below it, then brackets and bisects; otherwise it doubles from `start` and bisects.

    `predict(batch)`, when given, guesses fits(batch) at a fraction of its cost, or says None while it
    cannot (a real guided step is taken, and it is asked again). The guided search then runs on guesses
    and only its answer and the batch above it are probed ("model-guided, replayed"); a guess those
    probes contradict hands the search back to real probes. Either way the answer is exact, the one a
    search without `predict` finds. The result's probes are the real ones.
    """
    first, cap = _domain(multiple_of, start, limit)
    br = _Bracket(fits, multiple_of, cap)
    br.probe(first)
    if budget_bytes is not None and br.peaks():
        if predict is not None and _replayed(br, budget_bytes, predict):
            return br.result("model-guided, replayed")
        _guided(br, budget_bytes)
        return br.result("model-guided")
    _double_then_bisect(br, first)
    return br.result("doubling")


RUNNABLE_TRIES = 3   # first batches tried: 1, 2 and 4 times --multiple-of


def search_from_smallest_runnable(fits: Probe, *, budget_bytes: Optional[int] = None, multiple_of: int = 1,
                                  predict: Optional[Predictor] = None) -> tuple[SearchResult, str]:
    """find_max_batch from the smallest batch the model runs at, among multiple_of x 1, 2 and 4.

    A probe says "out of memory" by returning fits=False; an exception means the model cannot run
    at that batch for another reason (BatchNorm training on one value per channel refuses a batch of
    1), so the next size is tried, and the last one's exception is raised. Returns the search and a
    note naming the batches that could not run and why ("" when the first one ran). No batch is
    probed twice. `predict` is find_max_batch's."""
    outcomes: dict[int, ProbeOutcome] = {}

    def once(batch: int) -> ProbeOutcome:
        if batch not in outcomes:
            outcomes[batch] = fits(batch)
        return outcomes[batch]

    refused = []
    for k in range(RUNNABLE_TRIES):
        start = multiple_of * 2**k
        try:
            once(start)
            break
        except Exception as exc:  # noqa: BLE001 - any refusal that is not out of memory
            if k == RUNNABLE_TRIES - 1:
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            refused.append(f"batch {start} cannot run ({type(exc).__name__}: {first})")
    search = find_max_batch(once, budget_bytes=budget_bytes, multiple_of=multiple_of, start=start, predict=predict)
    return search, "; ".join(refused)


_UNITS = {"gib": 2**30, "gb": 10**9, "mib": 2**20, "mb": 10**6}
_BYTES = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """'16GiB', '16 GiB', '1.5GB', '512MiB', '16000MB' -> bytes (GiB = 2**30, GB = 10**9, MiB = 2**20, MB = 10**6)."""
    match = _BYTES.fullmatch(text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if unit is None or float(match.group(1)) <= 0:
        raise BadInputError(f"bad memory budget {text!r}: use a number with GiB, GB, MiB or MB, e.g. 16GiB")
    return int(Fraction(match.group(1)) * unit)


def format_bytes(n: int) -> str:
    """Bytes as GiB with one decimal ('15.9 GiB'); below 1 GiB as MiB."""
    return f"{n / 2**30:.1f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"
