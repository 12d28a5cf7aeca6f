"""Draw a memory timeline (timeline.MemoryTimeline): a stacked area of live bytes by category
through one training step, phases marked, the peak marked, and the modules holding the most at the
peak beside it; and the same modules as a terminal table. Never imports torch."""
from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from rich.table import Table

from ..estimate.timeline import CATEGORY_MEANING, MemoryTimeline
from .paper import GIB

MIB = 2**20
CATEGORY_COLOURS = {"parameters": "#4c72b0", "optimizer state": "#8172b3", "batch": "#937860",
                    "gradients": "#dd8452", "activations": "#55a868", "temporaries": "#c44e52"}
METHOD_TEXT = {"cpu-estimate": "CPU estimate with fake tensors, casting as CUDA autocast does",
               "cuda-tracked": "measured on CUDA"}


def _unit(timeline: MemoryTimeline) -> tuple[str, float]:
    for unit, scale in (("GiB", GIB), ("MiB", MIB)):
        if timeline.peak_bytes >= 2 * scale:
            return unit, scale
    return "KiB", 1024


def _title(timeline: MemoryTimeline) -> str:
    method = METHOD_TEXT.get(timeline.method, timeline.method)
    return (f"{timeline.model_name} @ {timeline.image_size} px, batch {timeline.batch_size}, AMP {timeline.amp}: "
            f"live tensor memory through one training step on {timeline.device_name} ({method})")


def timeline_chart(timeline: MemoryTimeline) -> Figure:
    """Stacked live bytes against op index, phase boundaries, the peak, and the top modules at the peak."""
    unit, scale = _unit(timeline)
    fig = Figure(figsize=(13.0, 6.2), layout="constrained")  # an aspect within chart_style.ASPECT_RANGE
    FigureCanvasAgg(fig)  # save_figure measures text on the Agg canvas
    ax, side = fig.subplots(1, 2, width_ratios=(2.4, 1.0))
    xs = list(timeline.op_index)
    base = [0.0] * len(xs)
    for name, column in zip(timeline.categories, timeline.bytes_by_category):
        top = [b + v / scale for b, v in zip(base, column)]
        ax.fill_between(xs, base, top, step="post", color=CATEGORY_COLOURS.get(name, "tab:gray"), linewidth=0,
                        label=f"{name} ({CATEGORY_MEANING.get(name, '')})")
        base = top
    peak_x, peak_y = xs[timeline.peak_sample], timeline.peak_bytes / scale
    ax.set_xlim(min(xs), max(xs) + 1)
    ax.set_ylim(0, peak_y * 1.22)
    on_top = blended_transform_factory(ax.transData, ax.transAxes)
    for i, span in enumerate(timeline.phases):
        if i:
            ax.axvline(span.first_op, color="black", linewidth=0.8, linestyle="--")
        ax.text((span.first_op + span.last_op + 1) / 2, 0.97, span.phase, transform=on_top, ha="center",
                va="top", fontsize=9, fontweight="bold")
    ax.plot([peak_x], [peak_y], marker="v", color="black", markersize=7, linestyle="none")
    left = peak_x > (min(xs) + max(xs)) / 2
    ax.annotate(f"peak {peak_y:.3g} {unit} (op {peak_x:,})", (peak_x, peak_y), xytext=(-12 if left else 12, 12),
                textcoords="offset points", ha="right" if left else "left", va="bottom", fontsize=9)
    ax.set_xlabel("op index in the step (ATen ops dispatched)")
    ax.set_ylabel(f"live tensor memory ({unit})")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, frameon=False)

    modules = list(reversed(timeline.top_modules))
    lefts = [0.0] * len(modules)
    for c, name in enumerate(timeline.categories):
        widths = [m.bytes_by_category[c] / scale for m in modules]
        if any(widths):
            side.barh(range(len(modules)), widths, left=lefts, color=CATEGORY_COLOURS.get(name, "tab:gray"))
        lefts = [a + b for a, b in zip(lefts, widths)]
    side.set_yticks(range(len(modules)), [m.module for m in modules], fontsize=8)
    side.set_xlabel(f"held at the peak ({unit})")
    side.set_title(f"modules holding the most at the peak\n(module depth {timeline.module_depth})", fontsize=9)
    side.grid(True, axis="x", alpha=0.3)
    side.set_xlim(0, max([*lefts, 0.0]) * 1.08 or 1.0)
    fig.suptitle(_title(timeline), fontsize=10)
    return fig


def timeline_table(timeline: MemoryTimeline) -> Table:
    """The modules holding the most at the peak, by category, and the peak's split."""
    unit, scale = _unit(timeline)
    table = Table(title=f"{_title(timeline)}: modules holding the most at the peak ({unit})")
    table.add_column("module")
    for name in timeline.categories:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for share in timeline.top_modules:
        table.add_row(share.module, *(f"{v / scale:,.1f}" for v in share.bytes_by_category),
                      f"{share.bytes_at_peak / scale:,.1f}")
    table.add_row("[bold]whole step at the peak", *(f"[bold]{v / scale:,.1f}" for v in timeline.peak_bytes_by_category),
                  f"[bold]{timeline.peak_bytes / scale:,.1f}")
    phase = next((s.phase for s in timeline.phases if s.first_op <= timeline.op_index[timeline.peak_sample]
                  <= s.last_op), "")
    allocator = ("" if timeline.allocator_peak_bytes is None
                 else f"; the allocator's max_memory_allocated: {timeline.allocator_peak_bytes / scale:,.1f} {unit}")
    table.caption = f"peak in the {phase} phase, op {timeline.op_index[timeline.peak_sample]:,}{allocator}"
    return table
