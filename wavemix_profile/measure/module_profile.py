"""Per-module breakdown of one model for `wavemix-profile profile`: class, output shape, parameters
and forward multiply-adds per image of every module down to a nesting depth, in the model's order.

MACs come from torch's FlopCounterMode with flops.py's formulas (2 FLOPs per multiply-add, halved
here), so the whole-model row equals the `forward_macs_per_image` that `compare` reports.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional

import torch

from .flops import flop_counter_mode
from ..core.results import ModuleRow

BATCH = 2  # images per forward pass: BatchNorm needs more than one value per channel in training mode


def _cut(path: str, depth: int) -> bool:
    """Whether a module path is within `depth` levels below the model ("" is level 0)."""
    return path == "" or path.count(".") < depth


def module_params(model: torch.nn.Module, depth: int) -> dict[str, int]:
    """Parameters per module path, cut at `depth` levels; "" is the whole model."""
    counts: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        parts = name.split(".")[:-1]
        for d in range(0, min(depth, len(parts)) + 1):
            counts[".".join(parts[:d])] += p.numel()
    return dict(counts)


def _output_shapes(model: torch.nn.Module, paths: set[str]) -> tuple[dict[str, Optional[tuple[int, ...]]], list]:
    """Forward hooks recording each listed module's output shape (batch left out); returns the dict
    they fill and the handles to remove."""
    shapes: dict[str, Optional[tuple[int, ...]]] = {}

    def hook(path: str):
        def record(module, inputs, output):
            first = output[0] if isinstance(output, (tuple, list)) and output else output
            shapes[path] = tuple(first.shape[1:]) if isinstance(first, torch.Tensor) else None
        return record
    handles = [m.register_forward_hook(hook(path)) for path, m in model.named_modules() if path in paths]
    return shapes, handles


def profile_modules(model: torch.nn.Module, image_size: int, depth: int) -> tuple[ModuleRow, ...]:
    """One row per module down to `depth` levels, in the model's own order (named_modules)."""
    modules = [(path, m) for path, m in model.named_modules() if _cut(path, depth)]
    shapes, handles = _output_shapes(model, {path for path, _ in modules})
    counter = flop_counter_mode(depth=depth + 1)
    model.eval()
    x = torch.randn(BATCH, 3, image_size, image_size)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    prefix = type(model).__name__
    flops: dict[str, int] = {}
    for name, per_op in counter.get_flop_counts().items():
        if name == "Global":
            flops[""] = sum(per_op.values())
        elif name.startswith(prefix + "."):
            flops[name[len(prefix) + 1:]] = sum(per_op.values())
    params = module_params(model, depth)
    return tuple(ModuleRow(path=path, type_name=type(m).__name__, output_shape=shapes.get(path),
                           params=params.get(path, 0), forward_macs_per_image=flops.get(path, 0) // (2 * BATCH))
                 for path, m in modules)
