"""The CUDA caching allocator's reserved memory, predicted from a CPU estimate's allocations.

The estimate (memory.CpuEstimator) records every storage its fake step creates and frees; here
that sequence is put in the order a CUDA measurement (memory.measure_step_peaks) makes on a fresh
allocator, and replayed through the allocator model (allocator.py):

- Training: the model's placement on the device, the batch and labels, the first warm-up step
  (with Adam's state created where Adam creates it), the other warm-up steps, then
  reset_peak_memory_stats and the measured step. The cache the warm-up steps leave is what the
  measured step starts from, as on a GPU: resetting the peak does not release it.
- Inference: the placement of a freshly built model and its batch (the labels made and freed),
  then the pass; the CUDA measurement frees the training state and empties the cache first, which
  leaves the same segments.

The answer is max_memory_reserved over the measured step or pass. What it does not see: memory that
CUDA libraries take through the allocator (cuBLAS and cuDNN workspaces), GradScaler's few scalars,
and anything a GPU run allocates that the CPU's fake step does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Optional, Sequence

import torch
import torch.nn as nn

from .allocator import Alloc, Allocator, Event, Free
from .training import TrainStep


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


def predicted_reserved(mode: str, recording: StepRecording, step: TrainStep, *, warmup_steps: int) -> int:
    """Predicted max_memory_reserved, in bytes, of the training step ("train") measured after
    `warmup_steps` warm-up steps, or of a freshly built model's inference pass ("infer"), from the
    recording of one such step of `step` (whose model and optimizer give the weights and Adam's state)."""
    setup = [*placement_events(step.model, channels_last=step.config.channels_last), *recording.batch]
    if mode == "train":
        at = len(recording.step) if recording.optimizer_step_at is None else recording.optimizer_step_at
        return train_reserved(setup, recording.step, optimizer_step_at=at, warmup_steps=warmup_steps,
                              state=adam_state_events(step.optimizer))
    # the labels are made with the batch and freed before the pass, as measured
    return peak_reserved([*setup, Free(recording.labels_id)], recording.step)


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


def adam_state_events(optimizer: torch.optim.Optimizer) -> list[Event]:
    """What Adam's first step allocates before its update: exp_avg and exp_avg_sq of each parameter
    that has state, in parameter order (Adam._init_group). Its step counts take no device memory:
    without `capturable` or `fused` Adam keeps them on the host."""
    events: list[Event] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if key != "step" and isinstance(value, torch.Tensor):
                    events.append(Alloc(("adam state", len(events)), value.untyped_storage().nbytes()))
    return events


def first_step(step: Sequence[Event], *, optimizer_step_at: int, state: Sequence[Event]) -> list[Event]:
    """A later training step's events turned into the first step's: Adam's state is created where
    the optimizer step begins (event index `optimizer_step_at`), and stays."""
    return [*step[:optimizer_step_at], *state, *step[optimizer_step_at:]]


def peak_reserved(before: Sequence[Event], measured: Sequence[Event]) -> int:
    """Peak reserved bytes (max_memory_reserved) while `measured` is replayed after `before` on a
    fresh allocator, peaks reset between them as the CUDA measurement resets them."""
    allocator = Allocator()
    allocator.replay(before)
    allocator.reset_peak()
    allocator.replay(measured)
    return allocator.peak_reserved_bytes


def train_reserved(setup: Sequence[Event], step: Sequence[Event], *, optimizer_step_at: int,
                   state: Sequence[Event], warmup_steps: int) -> int:
    """Peak reserved bytes of the training step measured after `warmup_steps` warm-up steps (one at
    least, as memory.measure_step_peaks runs), the first of which creates Adam's state."""
    warmup = first_step(step, optimizer_step_at=optimizer_step_at, state=state)
    for _ in range(max(1, warmup_steps) - 1):
        warmup += step
    return peak_reserved([*setup, *warmup], step)
