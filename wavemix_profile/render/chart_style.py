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
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..atomic import replacing
from ..host import usable_cores
from ..process_tree import signal_on_parent_death
from ..models import FAMILIES
from ..results import Result
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


def plain_log(axis, decades: float = 2.0) -> None:
    """Ticks of a log axis as plain numbers (0.5, 1, 2, 5, 10) rather than powers of ten; over more
    than three decades, powers of ten only, so the labels keep apart."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def scale_axis(ax, which: str, values: Sequence[float], *, reach: Sequence[float] = (), pad: float = 0.08,
               zero: bool = False) -> bool:
    """Log when `values` span more than LOG_SPAN, else linear; limits `pad` of the range beyond the
    values and `reach` (error bar ends: kept in view, not counted for the scale), in log space on a
    log axis, from 0 on a linear one when `zero`. Returns True for a log axis."""
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
        lo, hi = (0.0 if zero else min(shown)), max(shown)
        span = max(hi - lo, abs(hi) * 0.1, 1e-9)
        set_lim(lo if zero else lo - pad * span, hi + pad * span)
    return log


def new_figure(rows: int, cols: int, *, panel: tuple[float, float] = PANEL_SIZE, extra_height: float = 0.9,
               **subplots) -> tuple[Figure, list]:
    """A figure of rows x cols panels on the Agg canvas, constrained layout; returns (figure, axes flat)."""
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows + extra_height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **subplots)
    return fig, [ax for row in axes for ax in row]


def freeze_layout(fig: Figure) -> None:
    """Run the constrained layout once and keep it, so labels placed afterwards stay where measured."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


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
