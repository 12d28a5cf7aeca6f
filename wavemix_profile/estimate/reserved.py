"""The CUDA caching allocator's reserved memory, predicted from a CPU estimate's allocations.

The estimate (memory.CpuEstimator) records every storage its fake step creates and frees; here
that sequence is put in the order a CUDA measurement (memory.measure_step_peaks) makes on a fresh
allocator, and replayed through the allocator model (allocator.py):

- Training: the model's placement on the device, the batch and labels, the first warm-up step
  (with the optimizer's state created where its step begins), the other warm-up steps, then
  reset_peak_memory_stats and the measured step. The cache the warm-up steps leave is what the
  measured step starts from, as on a GPU: resetting the peak does not release it.
- Inference: the placement of a freshly built model and its batch (the labels made and freed),
  then the pass; the CUDA measurement frees the training state and empties the cache first, which
  leaves the same segments.

Two answers come of one replay (StepReplay):

- `peak_reserved()`: max_memory_reserved over the measured step or pass on a GPU with room to spare,
  where every segment the allocator takes stays cached;
- `fits(limit)` and `needed_bytes()`: whether the step runs when the allocator may hold at most a limit,
  and the least limit it runs in. A GPU near its capacity behaves so: a refused cudaMalloc makes the
  allocator release every wholly free cached segment and try once more (allocator.py), so what it
  cached for blocks freed earlier never stops a step that fits. At a large batch most of what a step
  reserves beyond its tensors is such a cache: a convolutional net's early layers leave their big
  activation segments free after the backward pass has used them, and the layers after ask for other
  sizes. Only fragmentation the release cannot undo (a segment with one live block) counts against
  the limit, which is how the max-batch prediction judges a batch (probes.py).

What it does not see: memory that cuDNN takes through the allocator for its workspaces (which cuDNN
gives up under pressure), GradScaler's few scalars, and anything a GPU run allocates that the CPU's
fake step does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Optional, Sequence

import torch
import torch.nn as nn

from .allocator import SEGMENT_UNIT_BYTES, Alloc, Allocator, AllocatorOutOfMemory, Event, Free
from ..sources.training import TrainStep


@dataclass
class StepRecording:
    """What one fake step's storages did, as allocator events (memory.LiveStorageTracker's trace):
    the batch and labels being made, then the step or pass, with the index in `step` at which the
    optimizer step began (`optimizer_step_begins` is its pre-hook)."""
    batch: list[Event] = field(default_factory=list)
    step: list[Event] = field(default_factory=list)
    labels_id: Hashable = None
    optimizer_step_at: Optional[int] = None

    def optimizer_step_begins(self, *_hook_args) -> None:
        if self.optimizer_step_at is None:
            self.optimizer_step_at = len(self.step)


@dataclass(frozen=True)
class StepReplay:
    """A measured step or pass as allocator events: `before` (placement, batch, warm-up steps) runs
    first on a fresh allocator, then peaks are reset and `measured` runs."""
    before: tuple[Event, ...]
    measured: tuple[Event, ...]

    def _run(self, limit_bytes: Optional[int], prelude: Sequence[Event]) -> Optional[Allocator]:
        allocator = Allocator(limit_bytes=limit_bytes)
        try:
            allocator.replay(prelude)
            allocator.replay(self.before)
            allocator.reset_peak()
            allocator.replay(self.measured)
        except AllocatorOutOfMemory:
            return None
        return allocator

    def peak_reserved(self, prelude: Sequence[Event] = ()) -> int:
        """max_memory_reserved of the measured part with no limit, in bytes: every segment taken stays."""
        return self._run(None, prelude).peak_reserved_bytes

    def fits(self, limit_bytes: int, prelude: Sequence[Event] = ()) -> Optional[int]:
        """Whether everything runs when the allocator may hold at most `limit_bytes` (releasing its cache
        and asking again where a segment would pass it, as on a full GPU): the peak reserved bytes of the
        measured part if so, None if a segment is refused even then. `prelude` runs first (cuBLAS's
        workspaces, which live in the allocator)."""
        allocator = self._run(limit_bytes, prelude)
        return None if allocator is None else allocator.peak_reserved_bytes

    def needed_bytes(self, prelude: Sequence[Event] = ()) -> int:
        """The least limit, in bytes, under which fits() holds: what the allocator cannot do without.
        Segments are whole multiples of 2 MiB, so only such limits differ, and the search is exact where
        running is monotone in the limit (more room never hurts)."""
        unit = SEGMENT_UNIT_BYTES
        lo, hi = 0, -(-self.peak_reserved(prelude) // unit)   # in units: lo fails (or is 0), hi runs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fits(mid * unit, prelude) is None:
                lo = mid
            else:
                hi = mid
        return hi * unit


def replay_of(mode: str, recording: StepRecording, step: TrainStep, *, warmup_steps: int) -> StepReplay:
    """The allocator events of the training step ("train") measured after `warmup_steps` warm-up steps
    (one at least, as memory.measure_step_peaks runs; the first creates the optimizer's state), or of
    a freshly built model's inference pass ("infer"), from the recording of one such step of `step`
    (whose model and optimizer give the weights and the optimizer's state)."""
    setup = [*placement_events(step.model, channels_last=step.config.channels_last), *recording.batch]
    if mode == "train":
        at = len(recording.step) if recording.optimizer_step_at is None else recording.optimizer_step_at
        warmup = first_step(recording.step, optimizer_step_at=at, state=kept_state_events(step))
        for _ in range(max(1, warmup_steps) - 1):
            warmup += recording.step
        return StepReplay((*setup, *warmup), tuple(recording.step))
    # the labels are made with the batch and freed before the pass, as measured
    return StepReplay((*setup, Free(recording.labels_id)), tuple(recording.step))


def placement_events(model: nn.Module, *, channels_last: bool) -> list[Event]:
    """What training._place allocates on the device for a model built on the host: a copy of each
    parameter, then of each buffer, in that order; a 4-D tensor asked for in channels_last is
    copied once more on the device and its first copy freed."""
    events: list[Event] = []
    for i, t in enumerate([*model.parameters(), *model.buffers()]):
        nbytes = t.numel() * t.element_size()
        events.append(Alloc(("placed", i), nbytes))
        host_layout = torch.empty(t.shape, device="meta")  # a host-built tensor is contiguous
        if channels_last and t.dim() == 4 and not host_layout.is_contiguous(memory_format=torch.channels_last):
            events += [Alloc(("placed in channels_last", i), nbytes), Free(("placed", i))]
    return events


def optimizer_state_events(step: TrainStep) -> list[Event]:
    """What the optimizer's first step allocates for its state: the recipe's tensors of each parameter
    that has state, in parameter order (Adam's exp_avg and exp_avg_sq, SGD's momentum buffer; none for
    plain SGD or no optimizer). Step counts take no device memory: without `capturable` or `fused`
    torch keeps them on the host."""
    return [Alloc(("optimizer state", i), t.untyped_storage().nbytes())
            for i, (_, t) in enumerate(step.optimizer_state())]


def kept_state_events(step: TrainStep) -> list[Event]:
    """What the first training step makes that later steps find made: the optimizer's state, and with
    keep_grads the gradients (made in its backward pass; here, where its optimizer step begins)."""
    grads = [Alloc(("kept gradient", i), g.untyped_storage().nbytes()) for i, g in enumerate(step.kept_grads())]
    return [*grads, *optimizer_state_events(step)]


def first_step(step: Sequence[Event], *, optimizer_step_at: int, state: Sequence[Event]) -> list[Event]:
    """A later training step's events turned into the first step's: the optimizer's state is created
    where the optimizer step begins (event index `optimizer_step_at`), and stays. (Adam makes it
    there; SGD makes its momentum buffers a little later in its step, after the weight-decay copies.)"""
    return [*step[:optimizer_step_at], *state, *step[optimizer_step_at:]]
