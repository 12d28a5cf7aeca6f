"""Measure a memory timeline of one training step (timeline.MemoryTimeline).

The step is the one every memory figure uses (training.TrainStep), after warm-up so Adam's state
exists. memory.LiveStorageTracker counts the storage of every tensor made and still alive, as the
CPU estimate does; here its trace of each storage made and released is noted with the op, the
phase (forward, backward, optimizer step) and the innermost module running its forward. Afterwards
each storage gets a category: a parameter's gradient (from post-accumulate-grad hooks), an
activation (made in the forward pass and alive when it ends), or a temporary (the rest); the
weights, Adam's state and the batch exist throughout. torch's MemTracker
(torch.distributed._tools.mem_tracker) was considered: it attributes memory to modules, but files
everything the optimizer step makes as optimizer state and everything the forward makes as
activations, and keeps no timeline, so the categories here are decided once the step is over.

- CPU (`cpu_timeline`): the fake-tensor step of memory.CpuEstimator, casting as CUDA autocast does;
  its peak is the estimator's peak_train_bytes.
- CUDA (`cuda_timeline`): the real step, tracked the same way, while the caching allocator records
  its history (torch.cuda.memory._record_memory_history); the snapshot is returned for saving as a
  pickle that https://pytorch.org/memory_viz opens.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..estimate.allocator import Alloc
from .fake_log import quiet_fake_errors
from .memory import CpuEstimator, LiveStorageTracker
from ..estimate.timeline import CATEGORIES, PHASES, MemoryTimeline, ModuleShare, PhaseSpan
from ..sources.training import StepConfig, TrainStep, optimizer_state_bytes, param_bytes

TOP_MODULES = 8
SNAPSHOT_MAX_ENTRIES = 1_000_000   # allocator events kept by _record_memory_history
_BACKWARD_MODULE = "(backward pass)"
_OPTIMIZER_MODULE = "(optimizer step)"
_BATCH_MODULE = "(input batch)"
_MODEL_MODULE = "(model)"


class _Recorder(list):
    """LiveStorageTracker's trace: each storage made or released, noted with the moment's context.
    Storage keys are reused once freed, so each allocation is its own instance."""

    def __init__(self, context: Callable[[], tuple[int, str, str]]):
        super().__init__()
        self.context = context
        self.instances: list[list] = []   # [bytes, phase made, module, event made, event freed or None]
        self.live: dict[int, int] = {}    # storage key -> instance
        self.events: list[tuple[int, int, int]] = []   # (instance, +1 made / -1 freed, op)

    def append(self, event) -> None:
        op, phase, module = self.context()
        if isinstance(event, Alloc):
            instance = len(self.instances)
            self.live[event.id] = instance
            self.instances.append([event.nbytes, phase, module, len(self.events), None])
            self.events.append((instance, 1, op))
        elif event.id in self.live:
            instance = self.live.pop(event.id)
            self.instances[instance][4] = len(self.events)
            self.events.append((instance, -1, op))


class _TimelineTracker(LiveStorageTracker):
    """LiveStorageTracker that counts ops and knows the phase and the module running."""

    def __init__(self, existing, names: dict[int, str]):
        self.op, self.phase, self.modules, self.names = -1, PHASES[0], [], names
        self.phase_starts: dict[str, int] = {PHASES[0]: 0}
        self.recorder = _Recorder(lambda: (max(self.op, 0), self.phase, self._module()))
        super().__init__(existing, trace=self.recorder)

    def _module(self) -> str:
        if self.phase == "optimizer step":
            return _OPTIMIZER_MODULE
        if self.modules:
            return self.modules[-1]
        return _BACKWARD_MODULE if self.phase == "backward" else _MODEL_MODULE

    def enter_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.phase_starts[phase] = self.op + 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.phase == "forward" and torch._C._current_graph_task_id() != -1:  # -1: not in a backward pass
            self.enter_phase("backward")
        self.op += 1
        return super().__torch_dispatch__(func, types, args, kwargs)

    @contextlib.contextmanager
    def watching(self, step: TrainStep):
        """Module forward hooks (the innermost module running) and the optimizer's step pre-hook."""
        def pre(module, args):
            self.modules.append(self.names.get(id(module), type(module).__name__))

        def post(module, args, output):
            if self.modules:
                self.modules.pop()

        handles = [nn.modules.module.register_module_forward_pre_hook(pre),
                   nn.modules.module.register_module_forward_hook(post),
                   step.optimizer.register_step_pre_hook(lambda *a: self.enter_phase("optimizer step"))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _state_owners(step: TrainStep, param_owner: dict[int, str]) -> list[tuple[str, torch.Tensor]]:
    """Each optimizer-state tensor with its parameter's module."""
    return [(param_owner.get(id(p), _MODEL_MODULE), value) for p, value in step.optimizer_state()]


def _cut(name: str, depth: int) -> str:
    return name if name.startswith("(") else ".".join(name.split(".")[:depth]) or _MODEL_MODULE


def tracked_step(step: TrainStep, x: torch.Tensor, y: torch.Tensor, *, model_name: str, image_size: int,
                 method: str, device_name: str, depth: int = 2) -> MemoryTimeline:
    """Run one training step of `step` on (x, y) under the tracker and build its timeline; the
    caller has run the warm-up steps and entered the fake mode or device context it needs."""
    model = step.model
    params = [*model.parameters(), *model.buffers()]
    # the host's step counts too, so that they are not taken for tensors the step makes
    state = [v for s in step.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    names = {id(m): name for name, m in model.named_modules() if name}
    param_owner = {id(p): name.rpartition(".")[0] for name, p in model.named_parameters()}
    tracker = _TimelineTracker([*params, *state, x, y], names)
    grads: dict[int, str] = {}   # instance -> owning module

    def on_grad(p):
        instance = tracker.recorder.live.get(p.grad.untyped_storage()._cdata)
        if instance is not None:
            grads[instance] = param_owner.get(id(p), _MODEL_MODULE)

    hooks = [p.register_post_accumulate_grad_hook(on_grad) for p in model.parameters() if p.requires_grad]
    try:
        with tracker.watching(step), tracker:
            step.train(x, y)
    finally:
        for hook in hooks:
            hook.remove()

    # what exists throughout, by category and module
    fixed = [0] * len(CATEGORIES)
    fixed_modules: dict[str, list[int]] = {}

    def hold(module: str, category: str, nbytes: int, into: dict[str, list[int]]) -> None:
        into.setdefault(_cut(module, depth), [0] * len(CATEGORIES))[CATEGORIES.index(category)] += nbytes

    seen: set[int] = set()
    held = [(name.rpartition(".")[0], "parameters", t) for name, t in [*model.named_parameters(),
                                                                       *model.named_buffers()]]
    held += [(owner, "optimizer state", t) for owner, t in _state_owners(step, param_owner)]
    for owner, kind, t in held:
        if t.untyped_storage()._cdata not in seen:  # tied weights and views count once
            seen.add(t.untyped_storage()._cdata)
            hold(owner, kind, t.untyped_storage().nbytes(), fixed_modules)
    for t in (x, y):
        hold(_BATCH_MODULE, "batch", t.untyped_storage().nbytes(), fixed_modules)
    for shares in fixed_modules.values():
        fixed = [a + b for a, b in zip(fixed, shares)]
    if fixed[0] != param_bytes(model) or fixed[1] != optimizer_state_bytes(step):
        raise AssertionError("parameters or optimizer state counted twice or missed")

    rec = tracker.recorder
    forward_ends = tracker.phase_starts.get("backward", tracker.op + 1)

    def category(instance: int) -> str:
        _, phase, _, _, freed = rec.instances[instance]
        if instance in grads:
            return "gradients"
        freed_op = rec.events[freed][2] if freed is not None else None
        if phase == "forward" and (freed_op is None or freed_op >= forward_ends):
            return "activations"
        return "temporaries"

    kinds = [CATEGORIES.index(category(i)) for i in range(len(rec.instances))]
    running = list(fixed)
    columns: list[list[int]] = [[] for _ in CATEGORIES]
    ops, totals = [], []
    for instance, sign, op in rec.events:
        running[kinds[instance]] += sign * rec.instances[instance][0]
        ops.append(op)
        totals.append(sum(running))
        for c, column in enumerate(columns):
            column.append(running[c])
    if not ops:  # nothing made: the step's memory is what it started with
        ops, totals = [0], [sum(fixed)]
        for c, column in enumerate(columns):
            column.append(fixed[c])
    peak = max(range(len(totals)), key=totals.__getitem__)

    modules = {name: list(shares) for name, shares in fixed_modules.items()}
    for instance, (nbytes, _, module, made, freed) in enumerate(rec.instances):
        if made <= peak and (freed is None or freed > peak):
            owner = grads.get(instance, module)
            hold(owner, CATEGORIES[kinds[instance]], nbytes, modules)
    top = sorted(modules.items(), key=lambda item: -sum(item[1]))[:TOP_MODULES]

    starts = [(phase, tracker.phase_starts[phase]) for phase in PHASES if phase in tracker.phase_starts]
    spans = tuple(PhaseSpan(phase, first, (starts[i + 1][1] - 1) if i + 1 < len(starts) else max(ops))
                  for i, (phase, first) in enumerate(starts))
    return MemoryTimeline(
        model_name=model_name, image_size=image_size, batch_size=x.shape[0], amp=step.config.amp, method=method,
        device_name=device_name, categories=CATEGORIES, op_index=tuple(ops),
        bytes_by_category=tuple(tuple(c) for c in columns), phases=spans, peak_bytes=totals[peak],
        peak_sample=peak, peak_bytes_by_category=tuple(c[peak] for c in columns),
        top_modules=tuple(ModuleShare(name, sum(shares), tuple(shares)) for name, shares in top), module_depth=depth)


def cpu_timeline(build: Callable[[], nn.Module], config: StepConfig, *, batch: int, image_size: int,
                 model_name: str, device_name: str, depth: int = 2) -> MemoryTimeline:
    """The CPU estimate's training step (memory.CpuEstimator: fake tensors, CUDA's autocast policy)
    as a timeline; its peak is the estimator's peak_train_bytes for the same settings."""
    from ..estimate.autocast_policy import cuda_autocast_policy
    estimator = CpuEstimator(build, config)
    estimator.peak("train", batch=batch, image_size=image_size)  # the warm-up step: Adam's state exists
    with quiet_fake_errors(), estimator._mode, cuda_autocast_policy():
        x, y = estimator.step.batch(batch, image_size)
        return tracked_step(estimator.step, x, y, model_name=model_name, image_size=image_size,
                            method="cpu-estimate", device_name=device_name, depth=depth)


def cuda_timeline(build: Callable[[], nn.Module], config: StepConfig, *, batch: int, image_size: int,
                  warmup_steps: int, model_name: str, device_name: str, depth: int = 2
                  ) -> tuple[MemoryTimeline, dict]:
    """The real step on CUDA as a timeline, and the caching allocator's snapshot of it
    (torch.cuda.memory._snapshot(), recorded with _record_memory_history over the tracked step)."""
    from dataclasses import replace
    from .memory import release_cuda_memory
    step = TrainStep(build(), config)
    x, y = step.batch(batch, image_size)
    for _ in range(max(1, warmup_steps)):
        step.train(x, y)
    device = config.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    torch.cuda.memory._record_memory_history(max_entries=SNAPSHOT_MAX_ENTRIES, clear_history=True)
    try:
        timeline = tracked_step(step, x, y, model_name=model_name, image_size=image_size, method="cuda-tracked",
                                device_name=device_name, depth=depth)
        torch.cuda.synchronize(device)
        allocator_peak: Optional[int] = torch.cuda.max_memory_allocated(device)
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
        del step, x, y
        release_cuda_memory()
    return replace(timeline, allocator_peak_bytes=allocator_peak), snapshot
