"""Max-batch search: exact on every monotone curve, never probes a batch twice, and the byte parser.

Curves are seeded random memory models under a 16 GiB budget whose true maximum is known by
construction; each probe call is recorded so the tests can check what the search asked for.
"""
import math
import random

import pytest

from wavemix_profile.core.errors import BadInputError
from wavemix_profile.measure.maxbatch import (ProbeOutcome, doubling_bisection, find_max_batch, format_bytes,
                                      parse_bytes, predict_max_batch)

GIB = 2**30
MIB = 2**20
BUDGET = 16 * GIB
TRUE_MAXIMA = (1, 2, 7, 8, 20, 64, 100, 384, 1000, 2176, 5000, 12345, 50000)
SEEDS = range(3)
KINDS = ("affine", "steps", "noisy", "sub-linear", "early-oom")


class Curve:
    """Peak bytes against batch with a known largest fitting batch; records every probe it answers.

    `report` is "bytes" (peak bytes on fitting probes), "none" (no bytes) or "bool" (plain bool).
    """

    def __init__(self, kind: str, true_max: int, seed: int, report: str = "bytes"):
        rng = random.Random(f"{kind}-{true_max}-{seed}")
        self.kind, self.true_max, self.report, self.rng = kind, true_max, report, rng
        # early-oom: the allocator gives up before the budget the search is told (fragmentation).
        self.threshold = BUDGET - (rng.randrange(1, BUDGET // 20) if kind == "early-oom" else 0)
        self.per_image = int(self.threshold * (1 - rng.uniform(0.02, 0.3)) / true_max)
        # Fixed part chosen so that true_max fits and true_max + 1 does not.
        self.fixed = self.threshold - self.per_image * true_max - rng.randrange(self.per_image)
        self.calls: list[int] = []

    def peak(self, batch: int) -> int:
        affine = self.fixed + self.per_image * batch
        if self.kind == "steps":                  # rounded up to 64 MiB; BUDGET is a whole number of them
            return -(-affine // (64 * MIB)) * 64 * MIB
        if self.kind == "sub-linear":             # reaches the budget half a batch past the maximum
            return int(self.fixed + (BUDGET - self.fixed) * (batch / (self.true_max + 0.5)) ** 0.8)
        return affine

    def fits(self, batch: int) -> bool:
        return self.peak(batch) <= self.threshold

    def __call__(self, batch: int):
        self.calls.append(batch)
        fits = self.fits(batch)
        if self.report == "bool":
            return fits
        peak = None
        if fits and self.report == "bytes":
            noise = self.rng.gauss(0.0, 0.005) if self.kind == "noisy" else 0.0
            peak = round(self.peak(batch) * (1 + noise))
        return ProbeOutcome(batch=batch, fits=fits, peak_bytes=peak)


def check_exact(result, curve: Curve, multiple_of: int) -> None:
    expected = curve.true_max // multiple_of * multiple_of
    where = f"{curve.kind} true max {curve.true_max}, multiple_of {multiple_of}, probes {curve.calls}"
    assert result.max_batch == expected, where
    assert len(curve.calls) == len(set(curve.calls)), f"a batch probed twice: {where}"
    assert [p.batch for p in result.probes] == curve.calls
    assert result.n_probes == len(curve.calls)
    assert all(b % multiple_of == 0 for b in curve.calls), where
    assert not result.capped


def test_curves_have_the_true_maximum_they_claim():
    for kind in KINDS:
        for true_max in TRUE_MAXIMA:
            curve = Curve(kind, true_max, seed=0)
            assert curve.fits(true_max) and not curve.fits(true_max + 1), (kind, true_max)


@pytest.mark.parametrize("multiple_of", [1, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_model_guided_search_is_exact(kind, multiple_of):
    for true_max in TRUE_MAXIMA:
        for seed in SEEDS:
            curve = Curve(kind, true_max, seed)
            check_exact(find_max_batch(curve, budget_bytes=BUDGET, multiple_of=multiple_of), curve, multiple_of)


@pytest.mark.parametrize("multiple_of", [1, 8])
@pytest.mark.parametrize("report,budget", [("bytes", None), ("none", BUDGET), ("bool", BUDGET)])
def test_without_budget_or_bytes_it_doubles_like_the_baseline(report, budget, multiple_of):
    for true_max in TRUE_MAXIMA:
        curve, twin = Curve("steps", true_max, 0, report), Curve("steps", true_max, 0, report)
        ours = find_max_batch(curve, budget_bytes=budget, multiple_of=multiple_of)
        check_exact(ours, curve, multiple_of)
        check_exact(doubling_bisection(twin, multiple_of=multiple_of), twin, multiple_of)
        assert ours.method == "doubling"
        assert curve.calls == twin.calls


@pytest.mark.parametrize("kind", KINDS)
def test_baseline_is_exact(kind):
    for true_max in TRUE_MAXIMA:
        curve = Curve(kind, true_max, seed=1)
        result = doubling_bisection(curve)
        check_exact(result, curve, 1)
        assert result.method == "doubling"


def test_model_guided_on_an_exact_line_needs_a_handful_of_probes():
    for true_max in TRUE_MAXIMA:
        curve = Curve("affine", true_max, seed=0)
        result = find_max_batch(curve, budget_bytes=BUDGET)
        assert result.method == "model-guided"
        assert result.n_probes <= 6, curve.calls
        # Doubling then bisecting needs about two probes per doubling.
        assert doubling_bisection(Curve("affine", true_max, seed=0)).n_probes >= 2 * math.log2(true_max)


@pytest.mark.parametrize("search", [find_max_batch, doubling_bisection])
def test_zero_when_the_smallest_batch_does_not_fit(search):
    for start, multiple_of in [(1, 1), (1, 8), (64, 1), (100, 8)]:
        calls = []

        def never(batch):
            calls.append(batch)
            return ProbeOutcome(batch=batch, fits=False)
        result = search(never, multiple_of=multiple_of, start=start)
        assert result.max_batch == 0
        assert calls[-1] == multiple_of and len(calls) == len(set(calls))
    assert search(never).n_probes == 1


@pytest.mark.parametrize("search", [find_max_batch, doubling_bisection])
def test_a_start_above_the_maximum_searches_below_it(search):
    curve = Curve("affine", 37, seed=0)
    result = search(curve, start=1000)
    assert curve.calls[0] == 1000
    check_exact(result, curve, 1)


@pytest.mark.parametrize("search", [find_max_batch, doubling_bisection])
def test_the_limit_caps_the_search(search):
    curve = Curve("affine", 50000, seed=0)
    result = search(curve, limit=5003, multiple_of=8)
    assert (result.max_batch, result.capped) == (5000, True)
    assert max(curve.calls) == 5000
    just_under = Curve("affine", 4999, seed=0)
    result = search(just_under, limit=5000)
    assert (result.max_batch, result.capped) == (4999, False)
    assert search(Curve("affine", 5000, seed=0), limit=5000).capped


def test_bad_arguments_and_a_probe_answering_for_another_batch():
    with pytest.raises(ValueError, match="multiple_of"):
        find_max_batch(lambda b: True, multiple_of=0)
    with pytest.raises(ValueError, match="limit 4"):
        doubling_bisection(lambda b: True, multiple_of=8, limit=4)
    with pytest.raises(ValueError, match="reported batch 2"):
        find_max_batch(lambda b: ProbeOutcome(batch=2, fits=True))


def test_predictor_on_an_exact_line():
    # fixed 2 GiB, 48 MiB per image: (16 GiB - 2 GiB) / 48 MiB = 298.67 images.
    peaks = {b: 2 * GIB + 48 * MIB * b for b in (1, 8, 32)}
    p = predict_max_batch(peaks, BUDGET)
    assert p.max_batch == 298
    assert (p.fixed_bytes, p.per_image_bytes) == (2 * GIB, 48 * MIB)
    assert p.predicted_peak_bytes == 2 * GIB + 298 * 48 * MIB
    assert predict_max_batch(peaks, BUDGET, multiple_of=8).max_batch == 296
    assert predict_max_batch(peaks, GIB).max_batch == 0


def test_predictor_is_least_squares():
    # Through (1, 1), (2, 3), (3, 2): slope 1/2, intercept 1; budget 3 is reached at batch 4.
    p = predict_max_batch({1: 1, 2: 3, 3: 2}, 3)
    assert (p.fixed_bytes, p.per_image_bytes, p.max_batch, p.predicted_peak_bytes) == (1.0, 0.5, 4, 3)


def test_predictor_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="two or more distinct batch sizes"):
        predict_max_batch({8: GIB}, BUDGET)
    with pytest.raises(ValueError, match="do not grow"):
        predict_max_batch({8: 2 * GIB, 16: 2 * GIB}, BUDGET)
    with pytest.raises(ValueError, match="do not grow"):
        predict_max_batch({8: 3 * GIB, 16: 2 * GIB}, BUDGET)


@pytest.mark.parametrize("text,expected", [
    ("16GiB", 16 * 2**30), ("16 GiB", 16 * 2**30), ("16gib", 16 * 2**30), (" 16 GIB ", 16 * 2**30),
    ("16GB", 16 * 10**9), ("1.5GB", 1_500_000_000), ("512MiB", 512 * 2**20), ("16000MB", 16 * 10**9),
    ("0.5GiB", 2**29), (".5 GiB", 2**29),
])
def test_parse_bytes_accepts(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["sixteen", "16", "16 G", "16TB", "16 GiB extra", "", "-1GiB", "0GiB",
                                  "1e3MB", "GiB", "16 Gibibytes"])
def test_parse_bytes_rejects(text):
    with pytest.raises(BadInputError) as info:
        parse_bytes(text)
    message = str(info.value)
    assert repr(text) in message and "GiB, GB, MiB or MB" in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_format_bytes():
    assert format_bytes(17_000_000_000) == "15.8 GiB"
    assert format_bytes(16 * GIB) == "16.0 GiB"
    assert format_bytes(512 * MIB) == "512.0 MiB"


def test_a_batch_the_model_cannot_run_is_skipped_not_taken_for_out_of_memory():
    from wavemix_profile.measure.maxbatch import ProbeOutcome, search_from_smallest_runnable
    probed = []

    def fits(batch):  # a BatchNorm model: one image per channel cannot train; memory allows 100 images
        probed.append(batch)
        if batch == 1:
            raise ValueError("Expected more than 1 value per channel when training")
        return ProbeOutcome(batch=batch, fits=batch <= 100, peak_bytes=1000 + 10 * batch)

    search, note = search_from_smallest_runnable(fits, budget_bytes=2000, multiple_of=1)
    assert search.max_batch == 100 and probed[:2] == [1, 2]
    assert len(probed) == len(set(probed)), "no batch probed twice"
    assert note == "batch 1 cannot run (ValueError: Expected more than 1 value per channel when training)"


def test_a_model_that_runs_at_no_small_batch_raises_its_own_error():
    from wavemix_profile.measure.maxbatch import search_from_smallest_runnable

    def fits(batch):
        raise RuntimeError(f"broken at {batch}")

    with pytest.raises(RuntimeError, match="broken at 8"):
        search_from_smallest_runnable(fits, budget_bytes=2000, multiple_of=2)


# --- a search run on cheap guesses, its answer confirmed by real probes ---------------------------

def guesses(curve: Curve, *, offset: int = 0, after: int = 0):
    """A predictor for `curve`: exact with offset 0, else it takes the boundary `offset` images too far
    (its peaks agree with it); None until the curve has answered `after` real probes."""
    def predict(batch):
        if len(curve.calls) < after:
            return None
        fits = curve.fits(batch - offset) if batch > offset else True
        return ProbeOutcome(batch=batch, fits=fits, peak_bytes=curve.peak(max(1, batch - offset)) if fits else None)
    return predict


def always(fits: bool, peak_bytes: int = GIB):
    return lambda batch: ProbeOutcome(batch=batch, fits=fits, peak_bytes=peak_bytes if fits else None)


def coin(seed: int):
    rng = random.Random(seed)
    return lambda batch: ProbeOutcome(batch=batch, fits=rng.random() < 0.5, peak_bytes=rng.randrange(1, BUDGET))


@pytest.mark.parametrize("multiple_of", [1, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_an_exact_predictor_leaves_the_answer_and_its_neighbour_to_probe(kind, multiple_of):
    for true_max in TRUE_MAXIMA:
        for seed in SEEDS:
            for after, most in [(0, 3), (2, 4)]:
                curve = Curve(kind, true_max, seed)
                result = find_max_batch(curve, budget_bytes=BUDGET, multiple_of=multiple_of,
                                        predict=guesses(curve, after=after))
                check_exact(result, curve, multiple_of)
                assert result.n_probes <= most, (kind, true_max, after, curve.calls)
                if result.max_batch > multiple_of:
                    assert result.method == "model-guided, replayed", (kind, true_max, curve.calls)


@pytest.mark.parametrize("multiple_of", [1, 8])
def test_a_wrong_predictor_changes_the_probes_never_the_answer(multiple_of):
    liars = [lambda c: guesses(c, offset=k) for k in (-40, -3, -1, 1, 2, 9, 500)]
    liars += [lambda c: always(True), lambda c: always(False), lambda c: always(True, peak_bytes=BUDGET),
              lambda c: coin(7)]
    for true_max in [*range(1, 65), 100, 384, 1000, 5000]:
        for liar in liars:
            curve, twin = Curve("affine", true_max, seed=0), Curve("affine", true_max, seed=0)
            result = find_max_batch(curve, budget_bytes=BUDGET, multiple_of=multiple_of, predict=liar(curve))
            check_exact(result, curve, multiple_of)
            assert result.max_batch == find_max_batch(twin, budget_bytes=BUDGET, multiple_of=multiple_of).max_batch


@pytest.mark.parametrize("kind", KINDS)
def test_a_predictor_that_never_guesses_leaves_the_search_as_it_was(kind):
    for true_max in TRUE_MAXIMA:
        curve, twin = Curve(kind, true_max, seed=2), Curve(kind, true_max, seed=2)
        result = find_max_batch(curve, budget_bytes=BUDGET, predict=lambda batch: None)
        assert result == find_max_batch(twin, budget_bytes=BUDGET)
        assert result.method == "model-guided" and curve.calls == twin.calls


def test_a_prediction_is_confirmed_at_the_limit_and_with_no_budget_it_is_not_used():
    curve = Curve("affine", 50000, seed=0)
    result = find_max_batch(curve, budget_bytes=BUDGET, limit=5003, multiple_of=8, predict=guesses(curve))
    assert (result.max_batch, result.capped, curve.calls) == (5000, True, [8, 5000])
    curve, twin = Curve("affine", 300, seed=0), Curve("affine", 300, seed=0)
    assert find_max_batch(curve, predict=guesses(curve)) == doubling_bisection(twin)


def test_the_smallest_runnable_search_passes_its_predictor_on():
    from wavemix_profile.measure.maxbatch import search_from_smallest_runnable
    curve = Curve("affine", 700, seed=0)

    def fits(batch):
        if batch == 2:
            raise ValueError("Expected more than 1 value per channel when training")
        return curve(batch)

    search, note = search_from_smallest_runnable(fits, budget_bytes=BUDGET, multiple_of=2, predict=guesses(curve))
    assert (search.max_batch, search.method, curve.calls) == (700, "model-guided, replayed", [4, 700, 702])
    assert note.startswith("batch 2 cannot run")
