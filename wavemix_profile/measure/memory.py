"""Peak memory of a training step and an inference pass.

What is counted. Training: one step after warm-up steps, so the optimizer's state exists, as on every real
step after the first; weights, gradients, optimizer state, the batch and its labels, activations and
temporaries. Inference: a freshly built model's pass; its weights and buffers, the input batch, and
what the pass allocates (activations, temporaries, logits); no optimizer state, no gradients, no
labels. The CUDA measurement, the CUDA max-batch probes (probes.py) and the CPU estimate all count
inference so; a measurement that follows a training step drops what the step left first.

CUDA: measured. torch.cuda.max_memory_allocated / max_memory_reserved around the measured step
(statistics reset just before it), and the device-level used memory from NVML, which is what
nvidia-smi shows (it adds the CUDA context and the allocator's cache), sampled about every 10 ms
during the step, its largest reading kept.

CPU: an estimate. The same step runs under FakeTensorMode (shapes and dtypes, no data, so any
batch size costs about the same to estimate) while a dispatch-mode tracker adds up the storage of
every tensor alive at once. It counts what the operators' outputs hold; it cannot see CUDA-only
costs (context, cuDNN/cuBLAS workspaces), so it is labelled an estimate and never presented as GPU
memory. The tracker also records the order in which storages are made and freed; replayed through a
model of the caching allocator (reserved.py, allocator.py) that order predicts max_memory_reserved,
the allocator's rounding and cache included (CpuEstimator.estimate). Two such recordings at
different batches give the recording at any other batch without a step (CpuEstimator.extrapolate).
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import weakref
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Protocol, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..estimate.allocator import Alloc, Event, Free
from ..estimate.autocast_policy import cuda_autocast_policy
from ..estimate.extrapolation import RecordedStep, RecordedUpdate, StepLine
from .fake_log import quiet_fake_errors
from ..estimate.reserved import StepRecording, StepReplay, replay_of
from ..core.results import MemoryResult, Settings
from .sampling import PeakSampler
from ..sources.training import StepConfig, TrainStep, optimizer_state_bytes, param_bytes


class LiveStorageTracker(TorchDispatchMode):
    """Adds up the bytes of tensor storage created inside it and still alive; keeps the peak.

    `existing` tensors (weights, inputs, optimizer state) are counted by the caller; views of them
    made inside must not look like new storage, so their storages are known from the start.
    `trace`, when given, gets an allocator.Alloc for each new storage and a Free when it is released,
    in order, while the tracker is entered (what is released later happens after what it traced).
    """

    def __init__(self, existing=(), *, trace: Optional[list] = None):
        super().__init__()
        self._existing = {t.untyped_storage()._cdata for t in existing}
        self._live: dict[int, int] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.trace = trace
        self._tracing = False

    def __enter__(self):
        self._tracing = self.trace is not None
        return super().__enter__()

    def __exit__(self, *exc_info):
        self._tracing = False
        return super().__exit__(*exc_info)

    def _release(self, key: int) -> None:
        self.current_bytes -= self._live.pop(key, 0)
        if self._tracing:
            self.trace.append(Free(key))

    def replay(self, events: Sequence[Event], tag: Hashable) -> None:
        """Count storages a skipped part of the step would have made and freed, given as allocator
        events (a RecordedUpdate's), as if they had been: their ids, within `tag`, in the trace too."""
        for event in events:
            key = (tag, event.id)
            if type(event) is Free:
                self._release(key)
                continue
            self._live[key] = event.nbytes
            self.current_bytes += event.nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            if self._tracing:
                self.trace.append(Alloc(key, event.nbytes))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self._live and key not in self._existing:  # views add nothing
                    self._live[key] = storage.nbytes()
                    self.current_bytes += storage.nbytes()
                    if self._tracing:
                        self.trace.append(Alloc(key, storage.nbytes()))
                    weakref.finalize(storage, self._release, key)
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        return out


@dataclass(frozen=True)
class StepEstimate:
    """One training step's or inference pass's CPU estimate, in bytes: `allocated_bytes` is the peak
    of what tensors hold (the figure max_memory_allocated measures, less the allocator's 512 B
    rounding); `reserved_bytes` the CUDA caching allocator's predicted max_memory_reserved with room
    to spare; `replay` the allocator events both come from, to replay under a limit (reserved.py)."""
    allocated_bytes: int
    reserved_bytes: int
    replay: Optional[StepReplay] = field(default=None, compare=False)   # storage ids differ between recordings


@dataclass(frozen=True)
class PeakEstimate:
    train_bytes: int
    infer_bytes: int
    params_bytes: int
    grads_bytes: int
    optimizer_state_bytes: int


def _tensor_bytes(tensors) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


def _state_tensors(step: TrainStep) -> list[torch.Tensor]:
    model, opt = step.model, step.optimizer
    return [*model.parameters(), *model.buffers(), *step.kept_grads(),
            *(v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor))]


class CpuEstimator:
    """Estimates peak bytes for any batch size from one fake model, built once.

    The model and its optimizer live as fake tensors; one warm-up step creates the optimizer state, as on a
    real run's later steps. Each estimate then tracks one training step or one inference pass, and
    keeps what it recorded for extrapolate(). The optimizer step, the same at any batch, runs in the
    first tracked training step and is replayed from its events in later ones (`replay_updates`).
    """

    def __init__(self, build: Callable[[], nn.Module], config: StepConfig, *, replay_updates: bool = True):
        from torch._subclasses.fake_tensor import FakeTensorMode
        self._mode = FakeTensorMode(allow_non_fake_inputs=True)
        with quiet_fake_errors(), self._mode:
            try:
                model = build()
            except Exception:  # an initialiser that reads values (trunc_normal_), or a model instance's
                model = None   # copy (sources.local_source), cannot run on fakes
        if model is None:
            model = _as_fake(build(), self._mode)
        with quiet_fake_errors(), self._mode:
            self.step = TrainStep(model, config)
        self.params_bytes = param_bytes(self.step.model)
        self.grads_bytes = sum(p.numel() * p.element_size() for p in self.step.model.parameters() if p.requires_grad)
        self._warm = False
        self._recorded: dict[tuple[str, int, int], RecordedStep] = {}     # (mode, image_size, batch)
        self._lines: dict[tuple[str, int, int, int], Optional[StepLine]] = {}
        self._replay_updates = replay_updates
        self._recorded_update: Optional[RecordedUpdate] = None   # see _update
        self._replays = itertools.count()

    @property
    def optimizer_state_bytes(self) -> int:
        return optimizer_state_bytes(self.step)

    def peak(self, mode: str, *, batch: int, image_size: int) -> int:
        """Estimated peak bytes of one training step ("train") or inference pass ("infer"). Inference
        counts weights, buffers, the input and what the pass allocates: the fake optimizer state of an
        earlier training estimate is alive but, as for a freshly built model, not counted. The step
        casts as CUDA autocast would (autocast_policy): the estimate predicts a GPU."""
        return self._run(mode, batch=batch, image_size=image_size)[0]

    def estimate(self, mode: str, *, batch: int, image_size: int,
                 warmup_steps: int = Settings.warmup_steps) -> StepEstimate:
        """peak()'s figure and the CUDA caching allocator's predicted max_memory_reserved, in bytes,
        of the training step measured after `warmup_steps` warm-up steps, or of the inference pass
        of a freshly built model (reserved.py). The replay costs milliseconds beside the fake step."""
        rec = StepRecording()
        allocated, step_peak = self._run(mode, batch=batch, image_size=image_size, recording=rec)
        self._recorded[(mode, image_size, batch)] = RecordedStep(rec, allocated, step_peak)
        replay = replay_of(mode, rec, self.step, warmup_steps=warmup_steps)
        return StepEstimate(allocated_bytes=allocated, reserved_bytes=replay.peak_reserved(), replay=replay)

    def extrapolate(self, mode: str, *, batch: int, image_size: int,
                    warmup_steps: int = Settings.warmup_steps) -> Optional[StepEstimate]:
        """estimate()'s figures at `batch` without a fake step: the recording there is drawn from the
        two largest batches estimate() recorded for this mode and image size (extrapolation.StepLine;
        the largest, as the batches asked for are mostly larger still) and replayed. None with fewer
        than two recordings, where they do not align, or where a size would not be whole bytes."""
        batches = sorted(b for m, s, b in self._recorded if (m, s) == (mode, image_size))[-2:]
        if len(batches) < 2:
            return None
        key = (mode, image_size, *batches)
        if key not in self._lines:
            self._lines[key] = StepLine.through(*((b, self._recorded[mode, image_size, b]) for b in batches))
        line = self._lines[key]
        made = None if line is None else line.at(batch)
        if made is None:
            return None
        recording, allocated = made
        replay = replay_of(mode, recording, self.step, warmup_steps=warmup_steps)
        return StepEstimate(allocated_bytes=allocated, reserved_bytes=replay.peak_reserved(), replay=replay)

    def _run(self, mode: str, *, batch: int, image_size: int,
             recording: Optional[StepRecording] = None) -> tuple[int, int]:
        """One fake training step or inference pass; returns peak()'s figure and the part of it the
        step's own storages made. With `recording`, the storages made for the batch and those the
        step creates and releases are recorded there."""
        rec = recording
        trace = None if rec is None else rec.step
        with quiet_fake_errors(), self._mode, cuda_autocast_policy():
            with contextlib.nullcontext() if rec is None else LiveStorageTracker(trace=rec.batch):
                x, y = self.step.batch(batch, image_size)
            if rec is not None:
                rec.labels_id = y.untyped_storage()._cdata
            if mode == "train":
                if not self._warm:
                    self.step.train(x, y)
                    self._warm = True
                tracker = LiveStorageTracker(existing=[*_state_tensors(self.step), x, y], trace=trace)
                with tracker:
                    self.step.train(x, y, update=lambda: self._update(tracker, rec))
                held = (self.params_bytes + self.optimizer_state_bytes + _tensor_bytes(self.step.kept_grads())
                        + _tensor_bytes((x, y)))
                return held + tracker.peak_bytes, tracker.peak_bytes
            tracker = LiveStorageTracker(existing=[*_state_tensors(self.step), x], trace=trace)
            with tracker:
                self.step.infer(x)
            return self.params_bytes + _tensor_bytes((x,)) + tracker.peak_bytes, tracker.peak_bytes

    def _update(self, tracker: LiveStorageTracker, rec: Optional[StepRecording]) -> None:
        """A tracked step's optimizer step: replayed from the first tracked step's events where the
        same parameters hold gradients (extrapolation.RecordedUpdate), otherwise run, and its
        events kept for later steps when the tracker traces and they are the step's own."""
        if rec is not None:
            rec.optimizer_step_begins()
        with_grads = tuple(p.grad is not None for group in self.step.optimizer.param_groups for p in group["params"])
        update = self._recorded_update
        if update is not None and update.with_grads == with_grads:
            tracker.replay(update.events, tag=("optimizer step", next(self._replays)))
            return
        began = None if tracker.trace is None else len(tracker.trace)
        self.step.update()
        if update is None and began is not None and self._replay_updates:
            self._recorded_update = RecordedUpdate.of(tracker.trace[began:], with_grads)


def _as_fake(model: nn.Module, mode) -> nn.Module:
    """Replace a real model's weights and buffers by fake tensors of the same shapes and dtypes."""
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = mode.from_tensor(b)
    return model


def estimate_cpu_peaks(build: Callable[[], nn.Module], config: StepConfig, *, batch: int,
                       image_size: int) -> PeakEstimate:
    """Estimated peak bytes of one training step (after one warm-up step) and of inference."""
    est = CpuEstimator(build, config)
    train = est.peak("train", batch=batch, image_size=image_size)
    infer = est.peak("infer", batch=batch, image_size=image_size)
    return PeakEstimate(train, infer, est.params_bytes, est.grads_bytes, est.optimizer_state_bytes)


def cpu_memory_result(estimator: CpuEstimator, *, batch: int, image_size: int) -> MemoryResult:
    """The CPU estimate as a MemoryResult: peaks of what tensors hold, and the caching allocator's
    predicted max_memory_reserved in the reserved fields."""
    train_estimate = estimator.estimate("train", batch=batch, image_size=image_size)
    infer_estimate = estimator.estimate("infer", batch=batch, image_size=image_size)
    train, infer = train_estimate.allocated_bytes, infer_estimate.allocated_bytes
    fixed = estimator.params_bytes + estimator.grads_bytes + estimator.optimizer_state_bytes
    return MemoryResult(
        method="cpu-estimate", batch_size=batch, peak_train_bytes=train, peak_infer_bytes=infer,
        reserved_train_bytes=train_estimate.reserved_bytes, reserved_infer_bytes=infer_estimate.reserved_bytes,
        params_bytes=estimator.params_bytes, grads_bytes=estimator.grads_bytes,
        optimizer_state_bytes=estimator.optimizer_state_bytes, activations_train_bytes=max(0, train - fixed))


def release_cuda_memory() -> None:
    """Hand what is free back to the device, cuBLAS's workspaces included.

    torch keeps one workspace per (cuBLAS handle, stream) for good, allocated through the caching
    allocator, and a training step makes two (its backward pass runs on autograd's own thread, with
    its own handle). Released here, an inference pass measured after a training step holds the one
    workspace it makes, as it would in a fresh process: on an H200 the backward thread's would have
    added 32 MiB to every inference peak (reports/nvidia-h200, the first validation)."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch._C._cuda_clearCublasWorkspaces()
        torch.cuda.empty_cache()


def drop_training_state(step: TrainStep) -> None:
    """Free what a training step leaves that inference does not hold: gradients and the optimizer's
    state (the next training step allocates them again). Labels are the caller's to drop."""
    step.optimizer.zero_grad(set_to_none=True)
    step.optimizer.state.clear()


class PeakCounter(Protocol):
    """Peak statistics of an allocator: `reset` makes the peak what is allocated now."""

    def reset(self) -> None: ...

    def peak_bytes(self) -> int: ...

    def reserved_bytes(self) -> Optional[int]: ...


class CudaAllocatorCounter:
    """torch.cuda's allocator statistics: max_memory_allocated (tensors) and max_memory_reserved (cache)."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int:
        torch.cuda.synchronize(self.device)  # the queued kernels must have run (and allocated) first
        return torch.cuda.max_memory_allocated(self.device)

    def reserved_bytes(self) -> Optional[int]:
        return torch.cuda.max_memory_reserved(self.device)


class LiveStorageCounter:
    """The CUDA allocator's statistics stood in for on the CPU: the bytes of every tensor storage
    made inside the context and still alive. Open it before building the model, so its weights count
    as they do on a GPU; it stands in for the allocator where the CUDA paths are tested on the CPU."""

    def __init__(self):
        self.tracker = LiveStorageTracker()

    def __enter__(self) -> "LiveStorageCounter":
        self.tracker.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.tracker.__exit__(*exc_info)

    def reset(self) -> None:
        gc.collect()
        self.tracker.peak_bytes = self.tracker.current_bytes

    def peak_bytes(self) -> int:
        return self.tracker.peak_bytes

    def reserved_bytes(self) -> Optional[int]:
        return None


def nvml_used_reader(device: torch.device) -> Optional[Callable[[], Optional[int]]]:
    """A function returning the device's used memory as NVML reports it, or None without NVML."""
    from .nvml import NvmlUnavailable, open_torch_device
    try:
        return open_torch_device(device).used_bytes
    except NvmlUnavailable:  # no driver, no library, or a virtualised device without NVML
        return None


def _max_int(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(value)


def measure_step_peaks(step: TrainStep, counter: PeakCounter, *, batch: int, image_size: int,
                       warmup_steps: int, method: str,
                       device_used: Optional[Callable[[], Optional[int]]] = None) -> MemoryResult:
    """Peak bytes of one training step after warm-up, then of one inference pass as a fresh model
    would run it: gradients, optimizer state and labels are dropped first, the input batch is kept.

    `counter` gives the allocator's peaks (CudaAllocatorCounter on a GPU); `device_used`, when given,
    is sampled about every 10 ms during each (NVML's used memory) and its largest reading kept.
    """
    x, y = step.batch(batch, image_size)
    for _ in range(max(1, warmup_steps)):
        step.train(x, y)
    counter.reset()
    with PeakSampler(device_used) as train_used:
        step.train(x, y)
        train_peak = counter.peak_bytes()
    train_reserved = counter.reserved_bytes()
    params, opt = param_bytes(step.model), optimizer_state_bytes(step)
    grads = sum(p.numel() * p.element_size() for p in step.model.parameters() if p.requires_grad)
    del y
    drop_training_state(step)
    release_cuda_memory()
    counter.reset()
    with PeakSampler(device_used) as infer_used:
        step.infer(x)
        infer_peak = counter.peak_bytes()
    return MemoryResult(
        method=method, batch_size=batch, peak_train_bytes=train_peak, peak_infer_bytes=infer_peak,
        reserved_train_bytes=train_reserved, reserved_infer_bytes=counter.reserved_bytes(),
        nvml_peak_train_bytes=_max_int(train_used.peak), nvml_peak_infer_bytes=_max_int(infer_used.peak),
        params_bytes=params, grads_bytes=grads, optimizer_state_bytes=opt,
        activations_train_bytes=max(0, train_peak - params - grads - opt))


def cuda_memory_result(step: TrainStep, *, batch: int, image_size: int, warmup_steps: int) -> MemoryResult:
    """Measured peaks on CUDA (measure_step_peaks with the allocator's statistics and NVML sampled)."""
    device = step.config.device
    return measure_step_peaks(step, CudaAllocatorCounter(device), batch=batch, image_size=image_size,
                              warmup_steps=warmup_steps, method="cuda-allocator",
                              device_used=nvml_used_reader(device))
