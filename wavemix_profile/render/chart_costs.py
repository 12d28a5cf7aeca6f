"""Measured costs per model: memory against parameters, throughput, images per joule and max batch.

* ``memory_vs_params``: one panel per image size, peak training memory at the batch size (GiB)
  against parameters (M); filled = measured by the CUDA allocator, hollow = CPU estimate.
* ``throughput``: a dot per model, one panel per image size and mode (training beside inference,
  or all in one column for a few models), images/s with ± CV × median error bars from the timed
  repeats; a GPU row's MFU is written beside its dot.
* ``images_per_joule``: the same layout, images per joule; only rows whose energy was read.
* ``max_batch``: the same layout, the largest training and inference batch within the budget;
  hollow = predicted from CPU estimates.

Each axis is log when its values span more than 10x; colours are the families' (chart_style). Every
figure keeps a sensible aspect at any count of models (chart_style.ASPECT_RANGE).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..core.results import Result
from .chart_labels import PointLabel, place_labels
from .chart_style import (LABEL_FONT, MAX_INCHES, device_text, families_present, family_colour, family_of,
                          figure_legend, fitted_title, freeze_layout, grid_columns, joined, namer, new_figure,
                          scale_axis)
from .columns import ENERGY_SOURCES, family_order
from .paper import GIB

MODES = (("train", "training"), ("infer", "inference"))
ROW_HEIGHT = 0.2        # inches per model in a dot plot
MIN_ROW_HEIGHT = 0.14   # the least that keeps 8 pt model names apart
DOT_PANEL_WIDTH = 4.4   # inches
DOT_PANEL_FRAME = 0.9   # inches of a dot panel beside its rows: title, axis, tick labels
DOT_EXTRA_HEIGHT = 0.8  # inches of the figure beside its panels: title and legend
SCATTER_PANEL = (5.6, 4.8)   # inches, a memory-against-parameters panel
SCATTER_EXTRA_HEIGHT = 0.9


def _legend(fig: Figure, families: list[str], *, filled: str = "", hollow: str = "") -> None:
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=family_colour(f), label=f) for f in families]
    if filled:
        handles.append(Line2D([], [], ls="", marker="o", ms=6, color="0.4", label=filled))
    if hollow:
        handles.append(Line2D([], [], ls="", marker="o", ms=6, mfc="none", color="0.4", label=hollow))
    figure_legend(fig, handles)


def _scatter(ax, rows: list[tuple[Result, float, float, bool]], *, gid: str, err: Sequence[float] = ()) -> None:
    """(result, x, y, hollow) points coloured by family; `err` horizontal error bars, one per row."""
    err = list(err) or [0.0] * len(rows)
    for family in families_present(r for r, *_ in rows):
        colour = family_colour(family)
        mine = [i for i, (r, *_) in enumerate(rows) if family_of(r) == family]
        for hollow in (False, True):
            group = [i for i in mine if rows[i][3] == hollow]
            if group:
                ax.scatter([rows[i][1] for i in group], [rows[i][2] for i in group], s=36, zorder=3,
                           facecolors="none" if hollow else colour, edgecolors=colour, linewidths=1.2,
                           gid=f"{family}|{gid}" + ("|hollow" if hollow else ""))
        if any(err[i] for i in mine):
            ax.errorbar([rows[i][1] for i in mine], [rows[i][2] for i in mine], xerr=[err[i] for i in mine],
                        fmt="none", ecolor=colour, elinewidth=0.9, capsize=2, zorder=2)


def memory_vs_params(results: Sequence[Result]) -> Optional[Figure]:
    """Peak training memory (GiB) against parameters (M), one panel per image size."""
    points = [r for r in results if r.ok and r.memory and r.params_total and r.memory.peak_train_bytes > 0]
    if not points:
        return None
    sizes = sorted({r.settings.image_size for r in points})
    name = namer(points)
    cols = grid_columns(len(sizes), SCATTER_PANEL, SCATTER_EXTRA_HEIGHT)
    fig, axes = new_figure(-(-len(sizes) // cols), cols, panel=SCATTER_PANEL, extra_height=SCATTER_EXTRA_HEIGHT)
    for ax in axes[len(sizes):]:
        ax.set_axis_off()
    panels = []
    for ax, size in zip(axes, sizes):
        here = [(r, r.params_total / 1e6, r.memory.peak_train_bytes / GIB, r.memory.is_estimate)
                for r in family_order([r for r in points if r.settings.image_size == size])]
        _scatter(ax, here, gid=f"{size}")
        scale_axis(ax, "x", [x for _, x, _, _ in here], pad=0.12)
        scale_axis(ax, "y", [y for _, _, y, _ in here], pad=0.12)
        ax.set_xlabel("parameters (M)", fontsize=9)
        ax.set_ylabel(f"peak training memory @ batch {joined(r.memory.batch_size for r, *_ in here)} (GiB)",
                      fontsize=9)
        ax.set_title(f"{size}×{size} px", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="major", alpha=0.25)
        panels.append((ax, here))
    measured = any(not r.memory.is_estimate for r in points)
    estimated = any(r.memory.is_estimate for r in points)
    _legend(fig, families_present(points), filled="filled: measured (CUDA allocator)" if measured else "",
            hollow="hollow: CPU estimate of the tensors' peak" if estimated else "")
    fitted_title(fig, f"Peak training memory against parameters, {device_text(points)}")
    freeze_layout(fig)
    for ax, here in panels:
        place_labels(ax, [PointLabel(x, y, name(r), gid=f"label|{name(r)}") for r, x, y, _ in here])
    return fig


def _dot_rows(results: Sequence[Result], value: Callable[[Result, str], Optional[float]], *, xlabel: str,
              title: str, error: Callable[[Result, str], float] = lambda r, mode: 0.0,
              hollow: Callable[[Result, str], bool] = lambda r, mode: False,
              note: Callable[[Result, str], Optional[str]] = lambda r, mode: None,
              legend: tuple[str, str] = ("", "")) -> Optional[Figure]:
    """A dot per model (rows, family order, the same in every panel), one panel per image size and
    mode (_dot_grid), of value(result, mode)."""
    shown = [r for r in results if r.ok and any(value(r, mode) for mode, _ in MODES)]
    if not shown:
        return None
    sizes = sorted({r.settings.image_size for r in shown})
    name = namer(shown)
    names = list(dict.fromkeys(name(r) for r in family_order(shown)))
    row = {n: i for i, n in enumerate(names)}
    fig, axes = _dot_grid(len(sizes) * len(MODES), len(names))
    notes = []
    for k, (ax, (size, (mode, what))) in enumerate(zip(axes, [(s, m) for s in sizes for m in MODES])):
        here = [r for r in family_order(shown) if r.settings.image_size == size and value(r, mode)]
        rows = [(r, value(r, mode), row[name(r)], hollow(r, mode)) for r in here]
        errs = [error(r, mode) for r in here]
        _scatter(ax, rows, gid=f"{mode}|{size}", err=errs)
        texts = [(r, x + e, y, note(r, mode)) for (r, x, y, _), e in zip(rows, errs) if note(r, mode)]
        for r, x, y, text in texts:
            notes.append(ax.annotate(text, (x, y), xytext=(5, 0), textcoords="offset points", va="center",
                                     fontsize=LABEL_FONT - 1, gid=f"note|{mode}|{size}|{name(r)}"))
        xs = [x for _, x, _, _ in rows]
        log = scale_axis(ax, "x", xs, reach=[x - e for x, e in zip(xs, errs)] + [x + e for x, e in zip(xs, errs)],
                         pad=0.25 if texts else 0.08, zero=True)
        ax.set_title(f"{what}, {size}×{size} px" if rows else f"{what}, {size}×{size} px: none", fontsize=10)
        ax.set_xlabel(xlabel + (", log" if log else ""), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="x", which="major", alpha=0.25)
        ax.grid(True, axis="y", alpha=0.12)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].set_ylim(len(names) - 0.4, -0.6)  # first model on top
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
    _legend(fig, families_present(shown), filled=legend[0], hollow=legend[1])
    fitted_title(fig, title.format(device=device_text(shown)))
    freeze_layout(fig)
    return fig


def _dot_grid(panels: int, rows: int) -> tuple[Figure, list]:
    """Panels of `rows` dot rows each, sharing the model names: training beside inference per image
    size, or (a few models) all in one column, whichever reads nearer a sensible aspect; rows
    thinner than ROW_HEIGHT (down to MIN_ROW_HEIGHT) where many would make a figure over MAX_INCHES tall."""
    choices = sorted({1, len(MODES)})
    cols = grid_columns(panels, (DOT_PANEL_WIDTH, ROW_HEIGHT * rows + DOT_PANEL_FRAME), DOT_EXTRA_HEIGHT, choices)
    grid_rows = -(-panels // cols)
    room = (MAX_INCHES - DOT_EXTRA_HEIGHT) / grid_rows - DOT_PANEL_FRAME
    row_height = max(MIN_ROW_HEIGHT, min(ROW_HEIGHT, room / rows))
    return new_figure(grid_rows, cols, panel=(DOT_PANEL_WIDTH, row_height * rows + DOT_PANEL_FRAME),
                      extra_height=DOT_EXTRA_HEIGHT, sharey=True)


def _mfu_note(result: Result, mode: str) -> Optional[str]:
    mfu = getattr(result.throughput, f"{mode}_mfu")
    return None if mfu is None else f"MFU {100 * mfu:.1f}%"


def _rate(r: Result, mode: str) -> Optional[float]:
    return getattr(r.throughput, f"{mode}_images_per_s") if r.throughput else None


def throughput(results: Sequence[Result]) -> Optional[Figure]:
    """Training and inference images/s per model and image size, ± CV × median; MFU beside GPU dots."""
    timed = [r for r in results if r.ok and r.throughput]
    batch = joined(r.throughput.batch_size for r in timed)
    precision = joined(r.throughput.precision or r.settings.amp for r in timed)
    return _dot_rows(results, _rate, xlabel="images/s (median, ± CV)",
                     error=lambda r, mode: (getattr(r.throughput, f"{mode}_cv") or 0.0) * _rate(r, mode),
                     note=_mfu_note,
                     title=f"Throughput on {{device}}, batch {batch}, {precision}")


def images_per_joule(results: Sequence[Result]) -> Optional[Figure]:
    """Training and inference images per joule per model and image size; None without energy."""
    def efficiency(r: Result, mode: str) -> Optional[float]:
        return getattr(r.throughput, f"{mode}_images_per_joule") if r.throughput else None

    counters = joined(ENERGY_SOURCES.get(r.throughput.energy_source, r.throughput.energy_source)
                      for r in results if r.ok and r.throughput and r.throughput.energy_source)
    return _dot_rows(results, efficiency, xlabel="images per joule",
                     title=f"Images per joule on {{device}}; energy over the timed blocks: {counters}")


def max_batch(results: Sequence[Result]) -> Optional[Figure]:
    """Largest training and inference batch within the budget per model and image size."""
    def found(r: Result, mode: str):
        return r.max_batch_train if mode == "train" else r.max_batch_infer

    searches = [m for r in results if r.ok for m in (r.max_batch_train, r.max_batch_infer) if m]
    budget = joined(f"{m.budget_bytes / GIB:.1f} GiB" for m in searches)
    predicted = any(m.predicted for m in searches)
    return _dot_rows(results, lambda r, mode: found(r, mode).max_batch if found(r, mode) else None,
                     xlabel="largest batch (images)", hollow=lambda r, mode: found(r, mode).predicted,
                     legend=("filled: found on the GPU" if not all(m.predicted for m in searches) else "",
                             "hollow: predicted from CPU estimates" if predicted else ""),
                     title=f"Largest batch within a {budget} budget on {{device}}")
