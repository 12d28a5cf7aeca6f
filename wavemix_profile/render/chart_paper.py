"""``paper_vs_measured``: measured / paper for every published value we measured, one panel per quantity.

Each panel is a dot plot sharing one row per model (and device, when several) with the others in its
row of panels; the marker's shape is the image size (which also names the table: see the panel
title), its colour the family. A ratio of 1 is the paper's value, drawn dashed; an axis is log when
its ratios (and 1) span more than 10x. Only comparable pairs are drawn: images/s timed anywhere but
on the paper's GPU has no ratio (paper.comparable), and the title says which were left out.
"""
from __future__ import annotations

from typing import Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..core.results import Result
from .chart_style import (LABEL_FONT, families_present, family_colour, family_of, figure_legend, fitted_title,
                          freeze_layout, grid_columns, new_figure, scale_axis)
from .columns import family_order
from .paper import PaperComparison, compare_with_paper

# Panels in order: (title, metric); the table(s) each value came from go in the title.
PANELS = (("parameters", "params"), ("GPU memory @ batch 64", "gpu_train_batch64"),
          ("largest training batch, 16 GB", "max_batch_train"),
          ("largest inference batch, 16 GB", "max_batch_infer"),
          ("training images/s (paper: V100)", "train_images_per_s"),
          ("inference images/s (paper: V100)", "infer_images_per_s"))
SIZE_MARKERS = {32: "o", 64: "s", 28: "^"}
OTHER_MARKERS = ("D", "v", "P", "X")
MAX_COLS = 3
PANEL_WIDTH = 3.7    # inches
ROW_HEIGHT = 0.2     # inches per model row
PANEL_FRAME = 1.0    # inches of a panel beside its rows: title, axis, tick labels
EXTRA_HEIGHT = 1.0   # inches of the figure beside its panels: title, its footnote line and the legend


def _marker(size: int, sizes: list[int]) -> str:
    extra = [s for s in sizes if s not in SIZE_MARKERS]
    return SIZE_MARKERS.get(size) or OTHER_MARKERS[extra.index(size) % len(OTHER_MARKERS)]


def row_label(c: PaperComparison, comparisons: Sequence[PaperComparison]) -> str:
    """The model, with the device added when the model was compared on more than one."""
    several = len({d.device_name for d in comparisons if d.model == c.model}) > 1
    return c.model + (f" [{c.device_name}]" if several else "")


def paper_vs_measured(results: Sequence[Result]) -> Optional[Figure]:
    """Measured / paper, one panel per quantity with a dot per model; None without comparisons."""
    every = compare_with_paper(results)
    comparisons = [c for c in every if c.ratio is not None]
    if not comparisons:
        return None
    apart = list(dict.fromkeys(c.device_name for c in every if c.ratio is None))
    family = {r.model_name: family_of(r) for r in results}
    order = list(dict.fromkeys(r.model_name for r in family_order([r for r in results if r.ok])))
    rank = {m: i for i, m in enumerate(order)}
    panels = [(title, metric, [c for c in comparisons if c.metric == metric])
              for title, metric in PANELS if any(c.metric == metric for c in comparisons)]
    most = len(set(row_label(c, comparisons) for c in comparisons))
    cols = grid_columns(len(panels), (PANEL_WIDTH, ROW_HEIGHT * most + PANEL_FRAME), EXTRA_HEIGHT,
                        range(1, min(MAX_COLS, len(panels)) + 1))
    grid_rows = [panels[i:i + cols] for i in range(0, len(panels), cols)]
    names_per_row = [sorted(dict.fromkeys(row_label(c, comparisons) for _, _, cs in row for c in cs),
                            key=lambda n: (rank.get(n.split(" [")[0], len(rank)), n)) for row in grid_rows]
    heights = [ROW_HEIGHT * len(n) + PANEL_FRAME for n in names_per_row]
    fig, axes = new_figure(len(grid_rows), cols, panel=(PANEL_WIDTH, sum(heights) / len(heights)),
                           extra_height=EXTRA_HEIGHT, height_ratios=heights)
    sizes = sorted({c.image_size for c in comparisons})
    nudge = {s: 0.22 * (i - (len(sizes) - 1) / 2) for i, s in enumerate(sizes)}  # sizes side by side in a row
    for r, (row, names) in enumerate(zip(grid_rows, names_per_row)):
        y = {n: i for i, n in enumerate(names)}
        for k in range(cols):
            ax = axes[r * cols + k]
            if k >= len(row):
                ax.set_axis_off()
                continue
            title, metric, members = row[k]
            for (fam, size) in dict.fromkeys((family.get(c.model), c.image_size) for c in members):
                group = [c for c in members if (family.get(c.model), c.image_size) == (fam, size)]
                ax.scatter([c.ratio for c in group], [y[row_label(c, comparisons)] + nudge[size] for c in group], s=32,
                           marker=_marker(size, sizes), color=family_colour(fam), zorder=3, gid=f"{fam}|{size}")
            ax.axvline(1.0, color="black", ls="--", lw=0.9, zorder=1)
            scale_axis(ax, "x", [c.ratio for c in members] + [1.0], pad=0.1)
            tables = ", ".join(f"T{t}" for t in sorted({c.table for c in members}))
            ax.set_title(f"{title} ({tables})", fontsize=9)
            ax.set_xlabel("measured / paper", fontsize=8)
            ax.set_yticks(range(len(names)), names if k == 0 else [""] * len(names))
            ax.set_ylim(len(names) - 0.4, -0.6)
            ax.tick_params(labelsize=LABEL_FONT + 1)
            ax.grid(True, axis="x", which="major", alpha=0.25)
            ax.grid(True, axis="y", alpha=0.12)
    compared = {c.model for c in comparisons}
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=family_colour(f), label=f)
               for f in families_present(r for r in results if r.model_name in compared)]
    handles += [Line2D([], [], ls="", marker=_marker(s, sizes), ms=6, color="0.4", label=f"{s}×{s} px")
                for s in sizes]
    figure_legend(fig, handles)
    left_out = (f"\nimages/s timed on {', '.join(apart)} left out: not comparable with the paper's V100"
                if apart else "")
    fitted_title(fig, "Measured / paper (1 = the paper's value, dashed); the paper used a 16 GB V100" + left_out, 10)
    freeze_layout(fig)
    return fig
