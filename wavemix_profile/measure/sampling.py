"""Readings taken in a background thread while the measured code runs.

A figure read once after a step misses what the step held at its busiest moment, and a counter
that wraps around can lap itself between two reads far apart. :class:`Periodic` calls a function
at the start, every `interval_s` in a daemon thread, and at the end; :class:`PeakSampler` keeps the
largest of the readings it is given (device used memory, for instance). Torch-free.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

# About 100 readings a second: finer than a training step of a small model, coarse enough that an
# NVML call (tens of microseconds) costs the measured step nothing it would notice.
PEAK_INTERVAL_S = 0.01


class Periodic:
    """Context manager: `tick()` on entry, every `interval_s` in a background thread, and on exit.

    An exception raised by `tick` in the thread stops the sampling and is raised again on exit, so
    a broken reader never goes unnoticed (unless the body raised: its exception goes on instead).
    """

    def __init__(self, tick: Callable[[], None], interval_s: float):
        if interval_s <= 0:
            raise ValueError(f"interval must be positive, got {interval_s!r} s")
        self._tick = tick
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval_s):
                self._tick()
        except BaseException as exc:  # handed to the caller's thread on exit
            self._error = exc

    def __enter__(self) -> "Periodic":
        self._tick()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wavemix-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if exc_info[0] is not None:  # the measured code's own exception matters more
            return
        if error is not None:
            raise error
        self._tick()


class PeakSampler:
    """The largest value `read()` returned while the context was open (None readings are skipped).

    `read` is called once on entry, about every `interval_s` from a background thread, and once on
    exit; `peak` is None when no reading was ever available. `readings` counts the calls. With
    `read` None there is nothing to sample: no thread starts and `peak` stays None.
    """

    def __init__(self, read: Optional[Callable[[], Optional[float]]], interval_s: float = PEAK_INTERVAL_S):
        self._read = read
        self._lock = threading.Lock()
        self.peak: Optional[float] = None
        self.readings = 0
        self._periodic = Periodic(self._sample, interval_s) if read is not None else None

    def _sample(self) -> None:
        value = self._read()
        with self._lock:
            self.readings += 1
            if value is not None and (self.peak is None or value > self.peak):
                self.peak = value

    def __enter__(self) -> "PeakSampler":
        if self._periodic is not None:
            self._periodic.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._periodic is not None:
            self._periodic.__exit__(*exc_info)
