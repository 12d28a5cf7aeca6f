"""The background sampler: a real thread calling a real reading function."""
import threading

import pytest

from wavemix_profile.measure.sampling import PeakSampler, Periodic


class Sequence:
    """Returns `values` one per call, then `then` for ever; remembers which threads called it."""

    def __init__(self, values, then):
        self.values, self.then = list(values), then
        self.threads: set[int] = set()
        self.served = threading.Event()

    def __call__(self):
        self.threads.add(threading.get_ident())
        if self.values:
            return self.values.pop(0)
        self.served.set()
        return self.then


def test_peak_is_the_largest_reading_during_the_block_not_the_last():
    # The highest reading comes from the background thread mid-block; the reading at the end is low.
    read = Sequence([100, 350, 7_000, None, 2_500, 600], then=400)
    with PeakSampler(read, interval_s=0.001) as sampler:
        assert read.served.wait(timeout=10), "the background thread never read"
    assert sampler.peak == 7_000
    assert sampler.readings >= 7  # six from the list, at least one more at the end
    assert len(read.threads) == 2 and threading.get_ident() in read.threads  # entry/exit here, the rest in the thread


def test_no_reading_gives_no_peak():
    with PeakSampler(lambda: None, interval_s=0.001) as sampler:
        pass
    assert sampler.peak is None and sampler.readings >= 2
    before = threading.active_count()
    with PeakSampler(None) as nothing:  # no reader (no NVML): no thread, no readings
        assert threading.active_count() == before
    assert nothing.peak is None and nothing.readings == 0


def test_the_exit_reading_counts_for_a_block_shorter_than_the_interval():
    read = Sequence([10, 90], then=20)
    with PeakSampler(read, interval_s=60) as sampler:
        pass  # no background reading in a block this short: entry gives 10, exit 90
    assert sampler.peak == 90 and sampler.readings == 2


class FailsInTheThread:
    """A reader that works on entry and fails at its first background call; `failed` is set then."""

    def __init__(self):
        self.calls = 0
        self.failed = threading.Event()

    def __call__(self):
        self.calls += 1
        if self.calls > 1:
            self.failed.set()
            raise OSError("device gone")
        return 1


@pytest.mark.parametrize("block_raises, expected", [(False, OSError), (True, ValueError)])
def test_a_reader_failing_in_the_thread_is_raised_on_exit_unless_the_block_raised(block_raises, expected):
    read = FailsInTheThread()
    with pytest.raises(expected):
        with Periodic(read, 0.001):
            assert read.failed.wait(timeout=10)
            if block_raises:
                raise ValueError("the step failed")  # the measured code's own error wins


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Periodic(lambda: None, 0)
