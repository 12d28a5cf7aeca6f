"""A memory timeline of one training step, as data: never imports torch.

memory_timeline.py measures it (the CPU's fake-tensor estimate, or a tracked CUDA step beside the
allocator's own history); render/timeline.py draws it. JSON round-trippable like results.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from ..core.results import _from, to_dict

TIMELINE_SCHEMA_VERSION = 1
# Bottom to top of the stack: what the step starts with, then what it makes.
CATEGORIES = ("parameters", "optimizer state", "batch", "gradients", "activations", "temporaries")
CATEGORY_MEANING = {
    "parameters": "weights and buffers",
    "optimizer state": "Adam's moments and step counts",
    "batch": "input images and labels",
    "gradients": "the parameters' .grad",
    "activations": "made in the forward pass and kept for backward",
    "temporaries": "everything else, freed within its phase",
}
PHASES = ("forward", "backward", "optimizer step")


@dataclass(frozen=True)
class PhaseSpan:
    """Ops first_op..last_op (inclusive) ran in `phase`; frees after the last op count in the last span."""

    phase: str
    first_op: int
    last_op: int


@dataclass(frozen=True)
class ModuleShare:
    """Bytes a module held at the peak, by category (CATEGORIES order): its parameters, their
    gradients and optimizer state, and the tensors made while it ran its forward."""

    module: str
    bytes_at_peak: int
    bytes_by_category: tuple[int, ...]


@dataclass(frozen=True)
class MemoryTimeline:
    """Live tensor bytes through one training step (after warm-up, so Adam's state exists).

    Sample i is the state after an allocation or release during op `op_index[i]` (ops counted
    from 0 at the step's first dispatched op); `bytes_by_category[c][i]` is category c's bytes then.
    `method`: "cpu-estimate" (a fake-tensor step on the CPU, casting as CUDA autocast does) or
    "cuda-tracked" (the real step on CUDA, with `allocator_peak_bytes` its max_memory_allocated and
    `snapshot_file` the allocator history for PyTorch's memory visualiser).
    """

    model_name: str
    image_size: int
    batch_size: int
    amp: str
    method: str
    device_name: str
    categories: tuple[str, ...]
    op_index: tuple[int, ...]
    bytes_by_category: tuple[tuple[int, ...], ...]
    phases: tuple[PhaseSpan, ...]
    peak_bytes: int
    peak_sample: int
    peak_bytes_by_category: tuple[int, ...]
    top_modules: tuple[ModuleShare, ...]
    module_depth: int
    allocator_peak_bytes: Optional[int] = None
    snapshot_file: Optional[str] = None
    schema_version: int = TIMELINE_SCHEMA_VERSION

    @property
    def is_estimate(self) -> bool:
        return self.method == "cpu-estimate"

    def total_bytes(self) -> list[int]:
        """Live bytes of every category at each sample."""
        return [sum(column) for column in zip(*self.bytes_by_category)]


def timeline_to_json(timeline: MemoryTimeline) -> str:
    return json.dumps(to_dict(timeline), separators=(",", ":"))


def timeline_from_json(text: str) -> MemoryTimeline:
    """Inverse of timeline_to_json, every field checked against its annotation (results.py's reader)."""
    data: Any = json.loads(text)
    if isinstance(data, dict) and data.get("schema_version", 0) > TIMELINE_SCHEMA_VERSION:
        raise ValueError(f"timeline schema {data['schema_version']} is newer than this wavemix-profile; upgrade")
    return _from(MemoryTimeline, data, "timeline")
