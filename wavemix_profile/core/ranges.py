"""The ranges a record's numbers lie in: a table from (record class, field) to its rule.

results.py checks every field's type; this table adds what a type cannot say (an image is at least
one pixel, a time is a finite number of seconds), so that a hand-edited or corrupted line of a store
is skipped on read instead of reaching a renderer ("## -5×-5 px"). A field absent here takes any value
of its type; None (an optional field left empty) always passes.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

Rule = tuple[Callable[[Any], bool], str]   # (test, what the value must be)

POSITIVE: Rule = (lambda v: v >= 1, "an integer >= 1")
COUNT: Rule = (lambda v: v >= 0, "an integer >= 0")
SECONDS: Rule = (lambda v: math.isfinite(v) and v >= 0, "a finite number of seconds >= 0")
POSITIVE_SECONDS: Rule = (lambda v: math.isfinite(v) and v > 0, "a finite number of seconds > 0")
RATE: Rule = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")

RANGES: dict[tuple[str, str], Rule] = {
    **{("Settings", name): POSITIVE for name in ("image_size", "batch_size", "num_classes", "throughput_batch_size",
                                                 "timed_iterations", "repeats", "memory_budget_bytes",
                                                 "multiple_of", "threads")},
    ("Settings", "warmup_steps"): COUNT,
    ("Settings", "min_block_s"): POSITIVE_SECONDS,
    ("Result", "wall_s"): SECONDS,
    ("Result", "params_total"): COUNT,
    ("Result", "params_trainable"): COUNT,
    **{("MemoryResult", name): COUNT for name in ("peak_train_bytes", "peak_infer_bytes", "reserved_train_bytes",
                                                  "reserved_infer_bytes", "params_bytes", "grads_bytes",
                                                  "optimizer_state_bytes", "predicted_device_train_bytes",
                                                  "predicted_device_infer_bytes")},
    ("MemoryResult", "batch_size"): POSITIVE,
    **{("FlopsResult", name): COUNT for name in ("forward_macs_per_image", "forward_flops_per_image",
                                                 "train_step_flops_per_image")},
    **{("ThroughputResult", name): POSITIVE for name in ("batch_size", "iterations", "repeats", "threads")},
    **{("ThroughputResult", name): RATE for name in ("train_images_per_s", "infer_images_per_s")},
    ("MaxBatchResult", "max_batch"): COUNT,
    ("MaxBatchResult", "budget_bytes"): COUNT,
    ("MaxBatchResult", "search_s"): SECONDS,
    ("ProbeRecord", "batch"): POSITIVE,
}


def out_of_range(record: str, field: str, value: Any) -> Optional[str]:
    """What `value` of record.field must be, if it is not; None when it is in range (or unruled)."""
    rule = RANGES.get((record, field))
    if rule is None or value is None or isinstance(value, bool):
        return None
    test, what = rule
    return None if test(value) else what
