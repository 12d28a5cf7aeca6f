"""Probes for the max-batch search: real CUDA runs, or CPU estimates that predict a GPU.

CUDA: a probe runs two full training steps at the batch (so Adam's state is allocated) or one
inference pass of the model as freshly built (gradients and optimizer state dropped, no labels: the
inference peak memory.py defines), from a clean state (gc and empty_cache; the exception released
before recovery).
Only CUDA out-of-memory counts as "does not fit"; any other error stops the search and is reported.
A budget below the device's size is emulated with torch.cuda.set_per_process_memory_fraction, with
the CUDA context that a real card of that size would also hold subtracted first.

CPU: each probe predicts the step on the target GPU. What lives outside PyTorch's allocator (the
CUDA context, lazily loaded kernels, library handles: cuda_overheads.py) is taken off the budget;
the rest is the allocator's limit. The step's allocations (the CPU estimate's recording, with
cuBLAS's workspaces first) are replayed through the caching-allocator model under that limit, which
releases its cache and asks again where a new segment would pass it, as the real allocator does when
cudaMalloc fails (reserved.StepReplay.fits). A batch fits when the replay runs: it fits the whole
device's use, not only the tensors, yet is not refused for cached segments a real GPU would have
released. Stored with each real probe: its tensors and the device memory it needs at least (the
allocator's least limit plus what lives outside it). Once the estimator holds two recordings of the
step (the memory stage's count), the search runs on their extrapolation (CpuEstimator.extrapolate:
milliseconds, not a fake step) and estimates only its answer and the batch above it, which keep it
exact.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..estimate.cuda_overheads import Overheads, overheads_for
from ..core.gpus import DEFAULT_BUDGET_BYTES, card_budget
from .maxbatch import ProbeOutcome, search_from_smallest_runnable
from .memory import (CpuEstimator, CudaAllocatorCounter, PeakCounter, StepEstimate, drop_training_state,
                     release_cuda_memory)
from ..core.results import MaxBatchResult, ProbeRecord, Settings
from ..sources.training import StepConfig, TrainStep

_OOM_WORDS = ("out of memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


def is_cuda_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory, including the allocation failures cuDNN and cuBLAS report as their own."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc) for w in _OOM_WORDS)


def search_max_batch(build: Callable[[], nn.Module], config: StepConfig, settings: Settings, *,
                     mode: str, on_probe: Callable[[ProbeOutcome], None] | None = None,
                     estimator: CpuEstimator | None = None, replay: bool = True) -> MaxBatchResult:
    """The largest batch for `mode` ("train" or "infer") within settings.memory_budget_bytes;
    `on_probe` hears each probe's outcome as it lands (for a live display). On the CPU, `replay`
    lets the search guess probes from the estimator's recordings (the same answer, fewer estimates)."""
    on_probe = on_probe or (lambda outcome: None)
    if config.device.type == "cuda":
        return _cuda_search(build, config, settings, mode, on_probe)
    return _predicted_search(estimator or CpuEstimator(build, config), settings, mode, on_probe, replay=replay)


def _result(mode, search, budget, *, began, method_prefix, refused="") -> MaxBatchResult:
    probes = tuple(ProbeRecord(p.batch, p.fits, p.peak_bytes) for p in search.probes)
    return MaxBatchResult(mode=mode, max_batch=search.max_batch, budget_bytes=budget, predicted=False,
                          method=f"{method_prefix}, {search.method}" + (f"; {refused}" if refused else ""),
                          probes=probes,
                          search_s=time.perf_counter() - began, capped=search.capped)


def module_loading() -> str:
    """How CUDA would load kernel modules for a process started like this one: "eager" only where
    CUDA_MODULE_LOADING says so (lazy is CUDA's default on Linux since 12.2, and torch's before)."""
    return "eager" if os.environ.get("CUDA_MODULE_LOADING", "").strip().upper() == "EAGER" else "lazy"


def target_overheads(settings: Settings) -> Overheads:
    """The overhead row a CPU prediction uses: settings.target_gpu (None: the largest row), the CUDA
    version settings.target_cuda names or else the one this torch was built for (a CPU-only torch: not
    known), and this process's module loading."""
    return overheads_for(settings.target_gpu, cuda_version=settings.target_cuda or torch.version.cuda,
                         loading=module_loading())


@dataclass(frozen=True)
class DeviceFit:
    """How a CPU prediction judges one training step ("train") or inference pass ("infer") on the
    target GPU within `budget_bytes`: what lives outside the allocator (overheads.row) is taken off the
    budget, the rest is the allocator's limit, and cuBLAS's workspaces are allocated first."""

    overheads: Overheads
    budget_bytes: int
    mode: str

    @property
    def limit_bytes(self) -> int:
        return self.budget_bytes - self.overheads.row.outside_allocator_bytes

    def fits(self, step: StepEstimate) -> bool:
        """Whether the step's allocations run within the limit (reserved.StepReplay.fits)."""
        prelude = self.overheads.row.workspace_events(self.mode)
        return self.limit_bytes > 0 and step.replay.fits(self.limit_bytes, prelude) is not None

    def steering_bytes(self, step: StepEstimate) -> int:
        """Tensors plus the GPU's fixed overheads: a line in the batch that the search steers by."""
        return step.allocated_bytes + self.overheads.row.fixed_bytes(self.mode)

    def needed_bytes(self, step: StepEstimate) -> int:
        """The least device memory, in bytes, the step runs in: the allocator's least limit for its
        allocations with cuBLAS's workspaces (reserved.StepReplay.needed_bytes), plus what lives
        outside the allocator."""
        row = self.overheads.row
        return step.replay.needed_bytes(row.workspace_events(self.mode)) + row.outside_allocator_bytes


def device_fit(settings: Settings, mode: str) -> DeviceFit:
    """The judge of a CPU prediction for `settings` and `mode`: its target GPU, within its budget, or else
    the named card's memory, or else DEFAULT_BUDGET_BYTES."""
    budget = settings.memory_budget_bytes or card_budget(settings.target_gpu) or DEFAULT_BUDGET_BYTES
    return DeviceFit(target_overheads(settings), budget, mode)


def _predicted_search(estimator: CpuEstimator, settings: Settings, mode: str, on_probe, *,
                      replay: bool) -> MaxBatchResult:
    """Largest b whose step runs on the target GPU: its allocations replayed under the allocator's
    limit (the budget less what lives outside the allocator; see the module docstring). The search
    steers by a line through the tensors plus the GPU's fixed overheads (the probes' peak_bytes it
    sees), which grows with the batch as the need does; the stored probes keep the tensors and the
    device memory needed beside the verdict. With `replay`, extrapolated estimates guess the probes
    (maxbatch.find_max_batch's `predict`)."""
    began = time.perf_counter()
    judge = device_fit(settings, mode)
    budget = judge.budget_bytes
    steps: dict[int, StepEstimate] = {}

    def outcome(batch: int, step: StepEstimate) -> ProbeOutcome:
        return ProbeOutcome(batch=batch, fits=judge.fits(step), peak_bytes=judge.steering_bytes(step))

    def fits(batch: int) -> ProbeOutcome:
        steps[batch] = estimator.estimate(mode, batch=batch, image_size=settings.image_size,
                                          warmup_steps=settings.warmup_steps)
        probed = outcome(batch, steps[batch])
        on_probe(dataclasses.replace(probed, peak_bytes=judge.needed_bytes(steps[batch])))
        return probed

    def predict(batch: int) -> Optional[ProbeOutcome]:
        step = estimator.extrapolate(mode, batch=batch, image_size=settings.image_size,
                                     warmup_steps=settings.warmup_steps)
        return None if step is None else outcome(batch, step)

    search, refused = search_from_smallest_runnable(fits, budget_bytes=budget, multiple_of=settings.multiple_of,
                                                    predict=predict if replay else None)
    needed = {p.batch: judge.needed_bytes(steps[p.batch]) for p in search.probes}
    probes = tuple(ProbeRecord(p.batch, p.fits, steps[p.batch].allocated_bytes, needed[p.batch])
                   for p in search.probes)
    at_answer = steps.get(search.max_batch)
    return MaxBatchResult(mode=mode, max_batch=search.max_batch, budget_bytes=budget, predicted=True,
                          method=f"cpu-estimate, {search.method}" + (f"; {refused}" if refused else ""), probes=probes,
                          search_s=time.perf_counter() - began, capped=search.capped,
                          predicted_peak_bytes=at_answer.allocated_bytes if at_answer else None,
                          predicted_device_bytes=needed.get(search.max_batch),
                          overhead_source=judge.overheads.describe())


def _cuda_search(build, config: StepConfig, settings: Settings, mode: str, on_probe) -> MaxBatchResult:
    began = time.perf_counter()
    device = config.device
    total = torch.cuda.get_device_properties(device).total_memory
    budget = settings.memory_budget_bytes or total
    emulated = settings.memory_budget_bytes is not None
    usable = emulate_budget(device, budget) if emulated else total - cuda_context_bytes(device)
    step = TrainStep(build(), config)

    def fits(batch: int) -> ProbeOutcome:
        outcome = cuda_probe(step, mode, batch=batch, image_size=settings.image_size)
        on_probe(outcome)
        return outcome

    try:
        search, refused = search_from_smallest_runnable(fits, budget_bytes=usable, multiple_of=settings.multiple_of)
    finally:
        step.model.to("cpu")  # hand the device back clean for the next measurement
        step.optimizer.state.clear()
        release_cuda_memory()
        torch.cuda.set_per_process_memory_fraction(1.0, cuda_index(device))
    return _result(mode, search, budget, began=began, refused=refused,
                   method_prefix="cuda" + (" emulated budget" if emulated else ""))


def cuda_context_bytes(device: torch.device) -> int:
    """Device memory in use that PyTorch's allocator does not hold: the CUDA context, library
    handles, and anything another process holds on the device."""
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info(device)
    return max(0, (total - free) - torch.cuda.memory_reserved(device))


def cuda_index(device: torch.device) -> int:
    """The ordinal of a CUDA device: "cuda" alone means the current one. Some calls
    (set_per_process_memory_fraction) refuse a device without an index."""
    return device.index if device.index is not None else torch.cuda.current_device()


def emulate_budget(device: torch.device, budget: int) -> int:
    """Cap this process's allocator so tensors get what a `budget`-byte card would leave them.

    The CUDA context (measured now: used memory not held by the allocator) would live on that card
    too, so it is subtracted. Returns the bytes left to the allocator."""
    total = torch.cuda.get_device_properties(device).total_memory
    context = cuda_context_bytes(device)
    usable = budget - context
    if usable <= 0:
        raise ValueError(f"memory budget {budget / 2**30:.2f} GiB is smaller than the CUDA context "
                         f"({context / 2**30:.2f} GiB)")
    torch.cuda.set_per_process_memory_fraction(min(1.0, usable / total), cuda_index(device))
    return usable


def probe_peak(step: TrainStep, mode: str, *, batch: int, image_size: int, counter: PeakCounter) -> int:
    """Peak bytes of two training steps at `batch` ("train", so Adam's state is allocated), or of one
    inference pass as a fresh model runs it ("infer": no gradients, optimizer state or labels held,
    the definition memory.measure_step_peaks and the CPU estimate share)."""
    if mode == "infer":
        drop_training_state(step)  # a train probe on the same step before this one leaves Adam's state
    release_cuda_memory()
    if mode == "infer":
        x, y = step.batch(batch, image_size)
        del y
        counter.reset()
        step.infer(x)
        return counter.peak_bytes()
    counter.reset()
    x, y = step.batch(batch, image_size)
    step.train(x, y)
    step.train(x, y)
    return counter.peak_bytes()


def cuda_probe(step: TrainStep, mode: str, *, batch: int, image_size: int) -> ProbeOutcome:
    """Does `batch` fit? Two training steps or one inference pass (probe_peak) from a clean allocator."""
    device = step.config.device
    oom = False
    try:
        peak = probe_peak(step, mode, batch=batch, image_size=image_size, counter=CudaAllocatorCounter(device))
    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
        if not is_cuda_oom(exc):
            raise
        oom = True  # recover below, after the except block has released the exception and its frames
    if oom:
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler = torch.amp.GradScaler(device.type, enabled=step.scaler.is_enabled())
        release_cuda_memory()
        return ProbeOutcome(batch=batch, fits=False, peak_bytes=None)
    release_cuda_memory()
    return ProbeOutcome(batch=batch, fits=True, peak_bytes=peak)
