"""What every chart shares: one colour per family, markers, axis scales, names and figure output.

Never imports torch or pyplot: figures are ``matplotlib.figure.Figure`` on the Agg canvas.
"""
from __future__ import annotations

import math
import os
import pickle
import signal
import threading
import traceback
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ..store.atomic import replacing
from ..run.host import usable_cores
from ..run.process_tree import signal_on_parent_death
from ..models import FAMILIES
from ..core.results import Result
from .columns import devices
from .paper import device_of

# One colour per family, the same in every chart (colour-blind-safe Okabe-Ito hues).
FAMILY_COLOURS = dict(zip(FAMILIES, ("#0072B2", "#E69F00", "#D55E00", "#009E73")))
OTHER_FAMILY = "other"
OTHER_COLOUR = "#7F7F7F"
FORMATS = ("png", "svg")
DPI = 150
LOG_SPAN = 10.0           # an axis whose values span more than this factor is drawn log
LABEL_FONT = 7            # point and bar labels, points
PANEL_SIZE = (5.2, 4.4)   # inches, one panel of a small-multiple grid
# Width / height of every chart, at any count of models: wider is a strip to squint at, taller a
# column to scroll; TARGET is what a choice between grids aims for. MAX_INCHES bounds either side
# (2,400 px at DPI), so that a chart fits a page or a screen.
ASPECT_RANGE = (0.6, 2.2)
TARGET_ASPECT = 1.4
MAX_INCHES = 16.0


def family_of(result: Result) -> str:
    return result.family if result.family in FAMILY_COLOURS else OTHER_FAMILY


def family_colour(family: Optional[str]) -> str:
    return FAMILY_COLOURS.get(family or OTHER_FAMILY, OTHER_COLOUR)


def families_present(results: Iterable[Result]) -> list[str]:
    """The families of `results`, in FAMILIES order, "other" last."""
    have = {family_of(r) for r in results}
    return [f for f in (*FAMILIES, OTHER_FAMILY) if f in have]


def joined(values) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values))


def device_text(results: Sequence[Result]) -> str:
    return joined(devices(results)) or "unknown device"


def namer(results: Sequence[Result]) -> Callable[[Result], str]:
    """Model names, with the device added only to a model measured on more than one device."""
    seen: dict[str, set[str]] = {}
    for r in results:
        seen.setdefault(r.model_name, set()).add(device_of(r))
    return lambda r: f"{r.model_name} [{device_of(r)}]" if len(seen[r.model_name]) > 1 else r.model_name


def wants_log(values: Iterable[float]) -> bool:
    """True when the positive values span more than LOG_SPAN (max / min)."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_SPAN


def tick_text(value: float) -> str:
    """A tick as a plain number with thousands separators: 0.5, 20, 1,000, 12,000 (never 1e+04)."""
    text = f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return "0" if text == "-0" else text


PLAIN_TICKS = FuncFormatter(lambda value, _pos: tick_text(value))


def plain_log(axis, decades: float = 2.0) -> None:
    """Ticks of a log axis as plain numbers (0.5, 1, 2, 5, 10) rather than powers of ten; over more
    than three decades, powers of ten only, so the labels keep apart."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(PLAIN_TICKS)
    axis.set_minor_formatter(NullFormatter())


def scale_axis(ax, which: str, values: Sequence[float], *, reach: Sequence[float] = (), pad: float = 0.08,
               zero: bool = False) -> bool:
    """Log when `values` span more than LOG_SPAN, else linear; limits `pad` of the range beyond the
    values and `reach` (error bar ends: kept in view, not counted for the scale), in log space on a
    log axis, from 0 on a linear one when `zero` or when all values are one positive value.
    Returns True for a log axis."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return False
    log = wants_log(values)
    shown = values + [v for v in reach if v is not None and math.isfinite(v) and (v > 0 or not log)]
    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale, set_lim = (ax.set_xscale, ax.set_xlim) if which == "x" else (ax.set_yscale, ax.set_ylim)
    if log:
        set_scale("log")
        lo, hi = math.log10(min(v for v in shown if v > 0)), math.log10(max(shown))
        span = max(hi - lo, 0.3)
        plain_log(axis, decades=span * (1 + 2 * pad))
        set_lim(10 ** (lo - pad * span), 10 ** (hi + pad * span))
    else:
        zero = zero or min(shown) == max(shown) > 0  # one value (one model): its scale from 0, not ±1%
        lo, hi = (0.0 if zero else min(shown)), max(shown)
        span = max(hi - lo, abs(hi) * 0.1, 1e-9)
        set_lim(lo if zero else lo - pad * span, hi + pad * span)
        axis.set_major_formatter(PLAIN_TICKS)
    return log


def bounded_size(width: float, height: float) -> tuple[float, float]:
    """(width, height) in inches, the shorter side grown until width / height lies in ASPECT_RANGE."""
    low, high = ASPECT_RANGE
    return max(width, height * low), max(height, width / high)


def grid_columns(panels: int, panel: tuple[float, float], extra_height: float,
                 choices: Sequence[int] = ()) -> int:
    """How many columns to lay `panels` panels of `panel` inches out in: of `choices` (default 1 to
    panels), the one whose figure comes nearest TARGET_ASPECT (on a log scale) and within MAX_INCHES."""
    def miss(cols: int) -> tuple[bool, float]:
        width, height = panel[0] * cols, panel[1] * -(-panels // cols) + extra_height
        return max(width, height) > MAX_INCHES, abs(math.log(width / height / TARGET_ASPECT))

    return min(choices or range(1, panels + 1), key=miss)


def new_figure(rows: int, cols: int, *, panel: tuple[float, float] = PANEL_SIZE, extra_height: float = 0.9,
               **subplots) -> tuple[Figure, list]:
    """A figure of rows x cols panels on the Agg canvas, constrained layout; returns (figure, axes flat).
    The figure keeps an aspect within ASPECT_RANGE (bounded_size): a few rows of dots are not a strip."""
    fig = Figure(figsize=bounded_size(panel[0] * cols, panel[1] * rows + extra_height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **subplots)
    return fig, [ax for row in axes for ax in row]


def _text_width(fig: Figure, text: str, size: float) -> float:
    """Pixels `text` takes at `size` points on `fig`'s canvas."""
    renderer = fig.canvas.get_renderer()
    return renderer.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)[0]


def fitted_title(fig: Figure, text: str, size: float = 11) -> None:
    """The figure's title, each line broken between words where it would run past the figure's
    width (a narrow figure of one column of panels still shows all of it)."""
    room = fig.get_figwidth() * fig.dpi * 0.96
    lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        current = words[0]
        for word in words[1:]:
            if _text_width(fig, f"{current} {word}", size) <= room:
                current = f"{current} {word}"
            else:
                lines.append(current)
                current = word
        lines.append(current)
    fig.suptitle("\n".join(lines), fontsize=size)


def figure_legend(fig: Figure, handles: Sequence) -> None:
    """The figure's one legend, below its panels, in as many columns as its width holds (entries
    of a row side by side, as many rows as needed), so that no entry runs past the figure's edge."""
    size = LABEL_FONT + 1
    # handle (2 em), the gap to the text (0.8 em) and between columns (2 em), as matplotlib's defaults
    widths = [_text_width(fig, h.get_label(), size) + 4.8 * size * fig.dpi / 72 for h in handles]
    room = fig.get_figwidth() * fig.dpi * 0.96
    cols = len(handles)
    while cols > 1 and sum(max(widths[c::cols]) for c in range(cols)) > room:
        cols -= 1
    fig.legend(handles=handles, loc="outside lower center", ncols=cols, fontsize=size, frameon=False)


def freeze_layout(fig: Figure) -> None:
    """Run the constrained layout once and keep it, so labels placed afterwards stay where measured;
    then thin the ticks of any linear axis whose labels would touch (spaced_ticks)."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    spaced_ticks(fig)


TICK_GAP_PX = 4  # the least room between two tick labels of an axis


def _crowded(axis, renderer) -> bool:
    lo, hi = sorted(axis.get_view_interval())
    boxes = sorted((t.label1.get_window_extent(renderer) for t in axis.get_major_ticks()
                    if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()),
                   key=lambda b: (b.x0, b.y0))
    vertical = axis.axis_name == "y"
    return any((b.y0 - a.y1 if vertical else b.x0 - a.x1) < TICK_GAP_PX
               for a, b in zip(boxes, boxes[1:]) if (b.y0 >= a.y0 if vertical else True))


def spaced_ticks(fig: Figure) -> None:
    """Fewer ticks on each axis whose tick labels touch or overlap, until they keep TICK_GAP_PX apart:
    a linear axis takes fewer bins (1 to 1.01 in steps of 0.0025 has long labels), a log axis powers
    of ten only (1,000 2,000 5,000 10,000 on a short one); fixed ticks are left alone."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            locator = axis.get_major_locator()
            if axis.get_scale() == "linear" and isinstance(locator, MaxNLocator):
                fewer = [MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]) for bins in (7, 5, 4, 3, 2, 1)]
            elif axis.get_scale() == "log" and isinstance(locator, LogLocator):
                fewer = [LogLocator(base=10, subs=(1.0,))]
            else:
                continue
            for thinner in fewer:
                if not _crowded(axis, renderer):
                    break
                axis.set_major_locator(thinner)
                fig.draw_without_rendering()  # the new ticks' labels, placed


def save_figure(fig: Figure, out: Path, name: str) -> list[Path]:
    """NAME.png and NAME.svg in `out`, each replaced atomically: a failed save leaves the old file.
    The layout is run once for both (each save would run a constrained layout again)."""
    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        freeze_layout(fig)
    paths = []
    for fmt in FORMATS:
        path = out / f"{name}.{fmt}"
        with replacing(path) as tmp:  # a full disk mid-savefig must not leave a truncated chart
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths


def save_figures(figures: Sequence[tuple[str, Figure]], out: Path) -> list[Path]:
    """save_figure for each (name, figure), the paths in that order. With a second core and no
    other thread in this process, a forked child saves every other figure meanwhile: rendering is
    most of the time a report takes. The child dies with this process (a SIGKILL included), and
    its failure is raised here as its own error (a full disk: errors.WriteFailed)."""
    if not figures:
        return []
    out.mkdir(parents=True, exist_ok=True)
    split = len(figures) > 1 and usable_cores() > 1 and threading.active_count() == 1 and hasattr(os, "fork")
    theirs = figures[1::2] if split else []
    told_r, told_w = os.pipe() if theirs else (None, None)
    parent = os.getpid()
    pid = os.fork() if theirs else None
    if pid == 0:  # the child: its half, then out without running the parent's exit handlers
        code = 1
        try:
            signal_on_parent_death(signal.SIGKILL)
            if os.getppid() == parent:  # else the parent died before the line above
                for name, fig in theirs:
                    save_figure(fig, out, name)
                code = 0
        except BaseException as exc:  # noqa: BLE001 - told to the parent on the pipe
            os.write(told_w, pickle.dumps(exc if isinstance(exc, (OSError, ValueError)) else RuntimeError(
                "".join(traceback.format_exception_only(exc)).strip())))
        finally:
            os._exit(code)
    try:
        saved = {name: save_figure(fig, out, name) for name, fig in (figures[0::2] if theirs else figures)}
    finally:
        if pid:
            os.close(told_w)
            with os.fdopen(told_r, "rb") as told:
                failure = told.read()
            _, status = os.waitpid(pid, 0)
    if pid:
        if failure:
            raise pickle.loads(failure)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(f"could not save the charts {', '.join(name for name, _ in theirs)}: the process saving "
                          f"them ended with status {os.waitstatus_to_exitcode(status)}")
        saved.update({name: [out / f"{name}.{fmt}" for fmt in FORMATS] for name, _ in theirs})
    return [path for name, _ in figures for path in saved[name]]
