"""Results as CSV: one row per Result (model × image size × device), flat columns with units in names.

Pandas-friendly: numbers unformatted (bytes, images/s, counts), booleans as True/False, an empty
cell for anything missing. MFU is a fraction (0.12, not 12%); energy is in joules and watts. A CPU
prediction has both ends of its band: peak_*_bytes (tensors) and predicted_device_*_bytes (what
nvidia-smi would show, for the overhead_source row). Reads result objects only; never imports torch.
"""
from __future__ import annotations

import csv
import io
from typing import Callable, Optional, Sequence

from ..results import Result

Getter = Callable[[Result], object]


def _flops(name: str) -> Getter:
    return lambda r: getattr(r.flops, name) if r.flops else None


def _memory(name: str) -> Getter:
    return lambda r: getattr(r.memory, name) if r.memory else None


def _timing(name: str) -> Getter:
    return lambda r: getattr(r.throughput, name) if r.throughput else None


def _max_batch(which: str, name: str) -> Getter:
    return lambda r: getattr(getattr(r, which), name) if getattr(r, which) else None


def memory_budget_bytes(result: Result) -> Optional[int]:
    """The budget the max batch was searched under; the requested one when no search ran."""
    for found in (result.max_batch_train, result.max_batch_infer):
        if found is not None:
            return found.budget_bytes
    return result.settings.memory_budget_bytes


def _overhead_source(result: Result) -> Optional[str]:
    """The CUDA overhead row a prediction used (cuda_overheads.py), from the memory estimate or a search."""
    found = [m for m in (result.memory, result.max_batch_train, result.max_batch_infer) if m is not None]
    return next((m.overhead_source for m in found if m.overhead_source), None)


FIELDS: tuple[tuple[str, Getter], ...] = (
    ("model", lambda r: r.model_name),
    ("family", lambda r: r.family),
    ("image_size", lambda r: r.settings.image_size),
    ("device_name", lambda r: r.environment.device_name if r.environment else None),
    ("batch_size", lambda r: r.settings.batch_size),
    ("amp", lambda r: r.settings.amp),
    ("params_total", lambda r: r.params_total),
    ("params_trainable", lambda r: r.params_trainable),
    ("forward_macs_per_image", _flops("forward_macs_per_image")),
    ("forward_flops_per_image", _flops("forward_flops_per_image")),
    ("train_step_flops_per_image", _flops("train_step_flops_per_image")),
    ("fvcore_macs_per_image", _flops("fvcore_macs_per_image")),
    ("memory_method", _memory("method")),
    ("peak_train_bytes", _memory("peak_train_bytes")),
    ("peak_infer_bytes", _memory("peak_infer_bytes")),
    ("reserved_train_bytes", _memory("reserved_train_bytes")),
    ("reserved_infer_bytes", _memory("reserved_infer_bytes")),
    ("predicted_device_train_bytes", _memory("predicted_device_train_bytes")),
    ("predicted_device_infer_bytes", _memory("predicted_device_infer_bytes")),
    ("nvml_train_bytes", _memory("nvml_train_bytes")),
    ("nvml_peak_train_bytes", _memory("nvml_peak_train_bytes")),
    ("nvml_peak_infer_bytes", _memory("nvml_peak_infer_bytes")),
    ("max_batch_train", _max_batch("max_batch_train", "max_batch")),
    ("max_batch_train_predicted", _max_batch("max_batch_train", "predicted")),
    ("max_batch_train_capped", _max_batch("max_batch_train", "capped")),
    ("max_batch_train_predicted_device_bytes", _max_batch("max_batch_train", "predicted_device_bytes")),
    ("max_batch_infer", _max_batch("max_batch_infer", "max_batch")),
    ("max_batch_infer_predicted", _max_batch("max_batch_infer", "predicted")),
    ("max_batch_infer_capped", _max_batch("max_batch_infer", "capped")),
    ("max_batch_infer_predicted_device_bytes", _max_batch("max_batch_infer", "predicted_device_bytes")),
    ("memory_budget_bytes", memory_budget_bytes),
    ("overhead_source", _overhead_source),
    ("train_images_per_s", _timing("train_images_per_s")),
    ("infer_images_per_s", _timing("infer_images_per_s")),
    ("train_cv", _timing("train_cv")),
    ("infer_cv", _timing("infer_cv")),
    ("train_mfu", _timing("train_mfu")),
    ("infer_mfu", _timing("infer_mfu")),
    ("train_images_per_joule", _timing("train_images_per_joule")),
    ("infer_images_per_joule", _timing("infer_images_per_joule")),
    ("train_joules_per_image", _timing("train_joules_per_image")),
    ("infer_joules_per_image", _timing("infer_joules_per_image")),
    ("train_watts", _timing("train_watts")),
    ("infer_watts", _timing("infer_watts")),
    ("energy_source", _timing("energy_source")),
    ("energy_note", _timing("energy_note")),
    ("throughput_batch_size", lambda r: r.throughput.batch_size if r.throughput
     else r.settings.throughput_batch_size or r.settings.batch_size),
    ("error", lambda r: r.error),
)
COLUMNS = tuple(name for name, _ in FIELDS)


def _cell(value: object) -> object:
    return "" if value is None else value


def render_csv(results: Sequence[Result]) -> str:
    """Header plus one row per result, in the order given; "\\n" line endings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in results:
        writer.writerow([_cell(get(result)) for _, get in FIELDS])
    return out.getvalue()
