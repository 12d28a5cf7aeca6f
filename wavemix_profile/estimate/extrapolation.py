"""A fake step's recording at any batch, from its recordings at two batches, without running it.

The CPU estimate (memory.CpuEstimator) records the storages one training step or inference pass
makes and frees (reserved.StepRecording), at a tenth to half a second a step. The operators a model
runs seldom depend on the batch, and each storage's size is a line in it (images times bytes per
image, plus a fixed part), so two recordings at different batches, aligned event to event, give the
recording at any other batch; reserved.py replays it in milliseconds. Where the operators do depend
on the batch (the zoo's transformers at batch 1, where a dimension of one turns some copies into
views) the recordings do not align and nothing is extrapolated; a size that bends between or beyond
the two batches would not show, which is why the max-batch search confirms its answer with real
estimates (maxbatch.find_max_batch's `predict`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Hashable, Iterator, Optional, Sequence

from .allocator import Alloc, Event, Free
from .reserved import StepRecording


@dataclass(frozen=True)
class RecordedStep:
    """One fake step's recording and its figures, in bytes: `allocated_bytes` (CpuEstimator.peak's)
    and `step_peak_bytes`, the part of it that the step's own storages made (its tracker's peak)."""
    recording: StepRecording
    allocated_bytes: int
    step_peak_bytes: int


def affine_at(low: int, high: int, batches: tuple[int, int], batch: int) -> Optional[int]:
    """The value at `batch` of the line through (batches[0], low) and (batches[1], high); None unless
    it is a whole number, 0 or more (a byte count)."""
    rise, rest = divmod((high - low) * (batch - batches[0]), batches[1] - batches[0])
    return None if rest or low + rise < 0 else low + rise


def running_peak(events: Sequence[Event]) -> int:
    """Most bytes live at once while `events` run from nothing (what memory.LiveStorageTracker keeps)."""
    live: dict[Hashable, int] = {}
    now = peak = 0
    for event in events:
        if type(event) is Alloc:
            live[event.id] = event.nbytes
            now += event.nbytes
            peak = max(peak, now)
        else:
            now -= live.pop(event.id)
    return peak


def _renamed(events: Sequence[Event], names: dict[Hashable, int], counter: Iterator[int]
             ) -> Optional[tuple[Event, ...]]:
    """`events` with each storage named by the order of its Alloc (`names` holds those live, from
    `counter`); None where an id is made twice or a Free names nothing live."""
    out = []
    for event in events:
        if type(event) is Alloc:
            if event.id in names:
                return None
            names[event.id] = next(counter)
            out.append(Alloc(names[event.id], event.nbytes))
        elif event.id in names:
            out.append(Free(names.pop(event.id)))
        else:
            return None
    return tuple(out)


@dataclass(frozen=True)
class RecordedUpdate:
    """The events of one optimizer step after the first (which makes Adam's state), storages named by
    the order they were made in. They are the same at any batch: what the step makes and frees
    depends on the parameters, which of them hold a gradient (`with_grads`, in the optimizer's
    order) and Adam's state, never on the images, so later fake steps replay them instead of running
    the step (memory.CpuEstimator)."""
    events: tuple[Event, ...]
    with_grads: tuple[bool, ...]

    @classmethod
    def of(cls, events: Sequence[Event], with_grads: tuple[bool, ...]) -> Optional["RecordedUpdate"]:
        """None unless the step's storages are its own: each one it frees made in it, and freed by its end."""
        names: dict[Hashable, int] = {}
        renamed = _renamed(events, names, itertools.count())
        return None if renamed is None or names else cls(renamed, with_grads)


@dataclass(frozen=True)
class _Renamed:
    """A recording with each storage named by the order of its Alloc, the same in any recording of
    the same step: a recorded id is the storage's address, which differs between runs and is reused
    once the storage is freed."""
    batch: tuple[Event, ...]
    step: tuple[Event, ...]
    labels_id: int
    optimizer_step_at: Optional[int]

    @classmethod
    def of(cls, recording: StepRecording) -> Optional["_Renamed"]:
        """None where the recording cannot be replayed: a Free of nothing live, an id made twice, or
        labels not live after the batch."""
        names: dict[Hashable, int] = {}
        counter = itertools.count()
        batch = _renamed(recording.batch, names, counter)
        labels = names.get(recording.labels_id)
        step = _renamed(recording.step, names, counter) if batch is not None else None
        if step is None or labels is None:
            return None
        return cls(batch, step, labels, recording.optimizer_step_at)

    def pattern(self) -> tuple:
        """Everything but the sizes."""
        def shape(events):
            return tuple(e.id if type(e) is Free else None for e in events)
        return shape(self.batch), shape(self.step), self.labels_id, self.optimizer_step_at


class StepLine:
    """Two recordings of one step at different batches, aligned event to event: each storage's size,
    and the bytes held before the step (weights, optimizer state, the batch), a line in the batch."""

    def __init__(self, batches: tuple[int, int], low: _Renamed, high: _Renamed, held: tuple[int, int]):
        self.batches, self._low, self._high, self._held = batches, low, high, held

    @classmethod
    def through(cls, low: tuple[int, RecordedStep], high: tuple[int, RecordedStep]) -> Optional["StepLine"]:
        """The line through recordings at two different batches (images), or None where they do not
        align: other events, another order, the labels or the optimizer step elsewhere, or a step
        whose live bytes do not peak where its tracker saw them peak."""
        (b0, r0), (b1, r1) = low, high
        renamed = [_Renamed.of(r.recording) for r in (r0, r1)]
        if b0 == b1 or None in renamed or renamed[0].pattern() != renamed[1].pattern():
            return None
        if any(running_peak(n.step) != r.step_peak_bytes for n, r in zip(renamed, (r0, r1))):
            return None
        held = (r0.allocated_bytes - r0.step_peak_bytes, r1.allocated_bytes - r1.step_peak_bytes)
        return cls((b0, b1), renamed[0], renamed[1], held)

    def at(self, batch: int) -> Optional[tuple[StepRecording, int]]:
        """The recording at `batch` images and its allocated bytes (RecordedStep.allocated_bytes); None
        where a size would not be a whole number of bytes, 0 or more."""
        made = []
        for low, high in ((self._low.batch, self._high.batch), (self._low.step, self._high.step)):
            events: list[Event] = []
            for a, b in zip(low, high):
                if type(a) is Free:
                    events.append(a)
                    continue
                nbytes = affine_at(a.nbytes, b.nbytes, self.batches, batch)
                if nbytes is None:
                    return None
                events.append(Alloc(a.id, nbytes))
            made.append(events)
        held = affine_at(*self._held, self.batches, batch)
        if held is None:
            return None
        recording = StepRecording(batch=made[0], step=made[1], labels_id=self._low.labels_id,
                                  optimizer_step_at=self._low.optimizer_step_at)
        return recording, held + running_peak(recording.step)
