"""Results as CSV: one row per Result (model × image size × device), one column per field.

Each column's name is the field's dotted path: the key path in a results.jsonl record (and in
`--json`) and the attribute path of the Python Result (`result.memory.peak_train_bytes`);
docs/fields.md lists them all with types, units and meanings (render/fields.py).

Pandas-friendly: numbers unformatted (bytes, images/s, counts), booleans as True/False, an empty
cell for anything missing (a skipped measurement). MFU is a fraction (0.12, not 12%); energy is in
joules per image and watts. A CPU prediction has both ends of its band: memory.peak_*_bytes (tensors)
and memory.predicted_device_*_bytes (what nvidia-smi would show, for the memory.overhead_source row).
Reads result objects only; never imports torch.
"""
from __future__ import annotations

import csv
import io
from typing import Sequence

from ..core.results import Result, value_at


def _max_batch(which: str) -> tuple[str, ...]:
    return tuple(f"{which}.{name}" for name in ("max_batch", "predicted", "capped", "predicted_device_bytes",
                                                "budget_bytes"))


# Who and where, what was asked, then params, FLOPs, memory, max batch and throughput; the error last.
COLUMNS: tuple[str, ...] = (
    "model_name", "family", "settings.image_size", "environment.device_name", "settings.batch_size", "settings.amp",
    "params_total", "params_trainable",
    "flops.forward_macs_per_image", "flops.forward_flops_per_image", "flops.train_step_flops_per_image",
    "flops.fvcore_macs_per_image",
    "memory.method", "memory.peak_train_bytes", "memory.peak_infer_bytes", "memory.reserved_train_bytes",
    "memory.reserved_infer_bytes", "memory.predicted_device_train_bytes", "memory.predicted_device_infer_bytes",
    "memory.nvml_train_bytes", "memory.nvml_peak_train_bytes", "memory.nvml_peak_infer_bytes",
    "memory.overhead_source",
    *_max_batch("max_batch_train"), *_max_batch("max_batch_infer"),
    "throughput.batch_size", "throughput.train_images_per_s", "throughput.infer_images_per_s",
    "throughput.train_cv", "throughput.infer_cv", "throughput.train_mfu", "throughput.infer_mfu",
    "throughput.train_joules_per_image", "throughput.infer_joules_per_image", "throughput.train_watts",
    "throughput.infer_watts", "throughput.energy_source", "throughput.energy_note",
    "error",
)


def _cell(value: object) -> object:
    return "" if value is None else value


def render_csv(results: Sequence[Result]) -> str:
    """Header plus one row per result, in the order given; "\\n" line endings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in results:
        writer.writerow([_cell(value_at(result, path)) for path in COLUMNS])
    return out.getvalue()
