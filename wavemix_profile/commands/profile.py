"""`wavemix-profile profile MODEL`: one model in depth.

Per-module forward FLOPs and parameters (to --depth), and peak training memory split into
parameters, gradients, Adam state and the rest (activations and temporaries).
"""
from __future__ import annotations

import sys
from collections import defaultdict

import torch
from ..render.terminal import make_console
from rich.table import Table

from ..results import Settings


def module_params(model: torch.nn.Module, depth: int) -> dict[str, int]:
    """Parameters per module path, cut at `depth` dots; "" is the whole model."""
    counts: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        parts = name.split(".")[:-1]
        for d in range(0, min(depth, len(parts)) + 1):
            counts[".".join(parts[:d])] += p.numel()
    return dict(counts)


def module_forward_flops(model: torch.nn.Module, x: torch.Tensor, depth: int) -> dict[str, int]:
    """Forward FLOPs per image per module path (2 FLOPs per multiply-add), cut at `depth`."""
    from ..flops import flop_counter_mode
    mode = flop_counter_mode(depth=depth + 1)
    model.eval()
    with torch.no_grad(), mode:
        model(x)
    prefix = type(model).__name__
    out: dict[str, int] = {}
    for name, per_op in mode.get_flop_counts().items():
        if name == "Global":
            key = ""
        elif name == prefix or name.startswith(prefix + "."):
            key = name[len(prefix) + 1:]
        else:
            continue
        if key.count(".") < depth or not key:  # torch tracks every depth; show down to `depth`
            out[key] = sum(per_op.values()) // x.shape[0]
    return out


def run_profile(args) -> int:
    from ..measure import _memory, default_device, describe_failure, validate
    from ..training import StepConfig

    settings = Settings(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                        device=args.device or default_device(), amp=args.amp, channels_last=args.channels_last,
                        compile=args.compile, num_classes=args.num_classes, target_gpu=args.target_gpu,
                        inference=args.inference)
    source = validate(settings)

    def build():
        return source.build(num_classes=settings.num_classes, image_size=settings.image_size)

    console = make_console()
    config = StepConfig.of(settings)
    try:
        model = build()
        size = settings.image_size
        params = module_params(model, args.depth)
        flops = module_forward_flops(model, torch.randn(2, 3, size, size), args.depth)
        order = [name for name, _ in model.named_modules()]
        console.print(module_table(f"{source.display_name} @ {size} px: per-module parameters and forward FLOPs",
                                   params, flops, order))
        console.print(memory_table(_memory(build, config, settings), source.display_name, settings))
    except (Exception, SystemExit) as exc:  # the model's failure, in one line: it is not ours to trace
        print(f"error: {source.display_name}: {describe_failure(exc)}", file=sys.stderr)
        return 1
    return 0


def module_table(title: str, params: dict[str, int], flops: dict[str, int], order: list[str]) -> Table:
    """Rows in the model's own module order, indented by depth."""
    table = Table(title=title)
    for header in ("module", "params", "params %", "forward GFLOPs/image", "FLOPs %"):
        table.add_column(header, justify="left" if header == "module" else "right")
    total_p, total_f = params.get("", 0) or 1, flops.get("", 0) or 1
    rank = {name: i for i, name in enumerate(order)}
    for name in sorted(set(params) | set(flops), key=lambda n: rank.get(n, len(rank))):
        indent = "  " * (name.count(".") + 1) if name else ""
        p, f = params.get(name, 0), flops.get(name, 0)
        table.add_row(indent + (name or "(whole model)"), f"{p:,}", f"{100 * p / total_p:.1f}",
                      f"{f / 1e9:.4f}", f"{100 * f / total_f:.1f}")
    return table


def memory_table(memory, model_name: str, settings: Settings) -> Table:
    kind = "CPU estimate, not GPU memory" if memory.is_estimate else "measured, CUDA allocator"
    table = Table(title=f"{model_name}: peak training memory at batch {memory.batch_size}, AMP {settings.amp} ({kind})")
    table.add_column("part")
    table.add_column("GiB", justify="right")
    table.add_column("share", justify="right")
    parts = [("parameters and buffers", memory.params_bytes), ("gradients", memory.grads_bytes),
             ("Adam state", memory.optimizer_state_bytes),
             ("activations and temporaries", memory.activations_train_bytes)]
    for name, value in parts:
        table.add_row(name, f"{value / 2**30:.3f}", f"{100 * value / memory.peak_train_bytes:.1f}%")
    table.add_row("[bold]peak, one training step", f"[bold]{memory.peak_train_bytes / 2**30:.3f}", "100%")
    table.add_row("peak, one inference pass", f"{memory.peak_infer_bytes / 2**30:.3f}", "")
    if memory.predicted_device_train_bytes is not None:  # the band's upper end: cuda_overheads.py
        table.add_row(f"on the device, training (nvidia-smi, upper end for {memory.overhead_source})",
                      f"≤{memory.predicted_device_train_bytes / 2**30:.3f}", "")
    return table
