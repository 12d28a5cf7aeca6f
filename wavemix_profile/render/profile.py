"""`profile`'s views: the per-module table and the memory split, for the terminal and as Markdown.
Reads result objects only; never imports torch."""
from __future__ import annotations

from rich.table import Table

from ..core.results import DEFAULT_OPTIMIZER, MemoryResult, ModuleProfile
from .columns import GIB

MODULE_HEADERS = ("module", "type", "output shape (per image)", "params", "params %", "forward MACs/image (M)",
                  "MACs %")


def _shape(shape) -> str:
    return "–" if shape is None else "×".join(str(d) for d in shape) or "scalar"


def _mega(n: int) -> str:
    """Millions, three significant digits below 100 (0.0553), whole above (1,298)."""
    return f"{n / 1e6:,.0f}" if n >= 100e6 else f"{n / 1e6:.3g}"


def module_rows(profile: ModuleProfile) -> list[tuple[str, ...]]:
    """The breakdown's cells, indented by depth: one MAC is one multiply-add (2 FLOPs), as in `compare`."""
    total = {"params": 0, "macs": 0}
    for row in profile.modules:
        if row.path == "":
            total = {"params": row.params, "macs": row.forward_macs_per_image}
    rows = []
    for row in profile.modules:
        indent = "  " * (row.path.count(".") + 1) if row.path else ""
        rows.append((indent + (row.path or "(whole model)"), row.type_name, _shape(row.output_shape),
                     f"{row.params:,}", f"{100 * row.params / (total['params'] or 1):.1f}",
                     _mega(row.forward_macs_per_image),
                     f"{100 * row.forward_macs_per_image / (total['macs'] or 1):.1f}"))
    return rows


def module_title(profile: ModuleProfile) -> str:
    return (f"{profile.model_name} @ {profile.settings.image_size} px, {profile.settings.num_classes} classes: "
            f"per-module parameters and forward MACs (to depth {profile.depth})")


def module_table(profile: ModuleProfile) -> Table:
    table = Table(title=module_title(profile))
    for header in MODULE_HEADERS:
        table.add_column(header, justify="left" if header in ("module", "type", "output shape (per image)") else "right")
    for cells in module_rows(profile):
        table.add_row(*cells)
    return table


def memory_rows(memory: MemoryResult, optimizer: str = DEFAULT_OPTIMIZER) -> list[tuple[str, str, str]]:
    parts = [("parameters and buffers", memory.params_bytes), ("gradients", memory.grads_bytes),
             (f"optimizer state ({optimizer})", memory.optimizer_state_bytes),
             ("activations and temporaries", memory.activations_train_bytes)]
    rows = [(name, f"{(value or 0) / GIB:.3f}", f"{100 * (value or 0) / memory.peak_train_bytes:.1f}%")
            for name, value in parts]
    rows.append(("peak, one training step", f"{memory.peak_train_bytes / GIB:.3f}", "100%"))
    rows.append(("peak, one inference pass", f"{memory.peak_infer_bytes / GIB:.3f}", ""))
    if memory.predicted_device_train_bytes is not None:  # the band's upper end: cuda_overheads.py
        rows.append(("on the device, training (what nvidia-smi shows, upper end)",
                     f"≤{memory.predicted_device_train_bytes / GIB:.3f}", ""))
    return rows


def memory_title(profile: ModuleProfile) -> str:
    memory = profile.memory
    kind = "CPU estimate, not GPU memory" if memory.is_estimate else "measured, CUDA allocator"
    settings = profile.settings
    return (f"{profile.model_name}: peak training memory at batch {memory.batch_size}, {settings.num_classes} "
            f"classes, {settings.optimizer}{', gradients kept' if settings.keep_grads else ''}, AMP {settings.amp} "
            f"({kind})")


def memory_table(profile: ModuleProfile) -> Table:
    source = profile.memory.overhead_source
    table = Table(title=memory_title(profile), caption_justify="left", min_width=len(memory_title(profile)),
                  caption=f"≤: the predicted upper end, for {source} (wavemix_profile/estimate/cuda_overheads.py)" if source else None)
    table.add_column("part")
    table.add_column("GiB", justify="right")
    table.add_column("share", justify="right")
    for name, gib, share in memory_rows(profile.memory, profile.settings.optimizer):
        bold = name.startswith("peak, one training")
        table.add_row(*(f"[bold]{c}" if bold and c else c for c in (name, gib, share)))
    return table


def profile_markdown(profile: ModuleProfile) -> str:
    """The same two tables as GitHub Markdown, headed by the command that produced them."""
    from .markdown import _md, _table
    lines = [f"# {_md(module_title(profile))}", ""]
    if profile.command:
        lines += [f"Produced by `{profile.command}`.", ""]
    lines += _table(MODULE_HEADERS, "lllrrrr", [[_md(c) for c in row] for row in module_rows(profile)])
    if profile.memory is not None:
        lines += ["", f"## {_md(memory_title(profile))}", ""]
        lines += _table(("part", "GiB", "share"), "lrr", [[_md(c) for c in row] for row in memory_rows(profile.memory, profile.settings.optimizer)])
        if profile.memory.overhead_source:
            lines += ["", f"≤: the predicted upper end, for {_md(profile.memory.overhead_source)} "
                          "(wavemix_profile/estimate/cuda_overheads.py)"]
    return "\n".join(lines) + "\n"
