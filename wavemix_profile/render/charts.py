"""Charts as matplotlib Figures, written as PNG and SVG. Never imports torch, never touches pyplot.

Figures are built on ``matplotlib.figure.Figure`` directly, so no global backend or figure state is
involved; saving renders through Agg (PNG) and the SVG backend. Each chart function returns None
when there is nothing to plot, and :func:`write_charts` then skips that chart.

* ``memory_vs_params``: one panel per image size, peak training memory at the batch size (GiB)
  against parameters (M), log-log, one colour per family, hollow markers for CPU estimates.
* ``throughput``: training and inference images/s, bars per model grouped by image size; a GPU
  row with a model FLOPs utilisation has it written over its bar, in percent.
* ``images_per_joule``: training and inference images per joule, laid out as ``throughput``; only
  rows whose energy was read (the report's environment table says why the others have none).
* ``max_batch``: one panel per image size, largest train and inference batch per model; the budget is
  in the title, predicted values are hatched.
* ``paper_vs_measured``: measured / paper for every published value we have, grouped by metric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from textwrap import fill
from typing import Callable, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..atomic import replacing
from ..models import FAMILIES
from ..results import Result
from .columns import ENERGY_SOURCES, devices, family_order
from .paper import GIB, METRIC_LABELS, compare_with_paper, device_of

FAMILY_COLOURS = dict(zip(FAMILIES, ("tab:blue", "tab:orange", "tab:red", "tab:green")))
OTHER_COLOUR = "tab:gray"
FORMATS = ("png", "svg")


def _joined(values) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values))


def _namer(results: Sequence[Result]) -> Callable[[Result], str]:
    """Model names, with the device added only to a model measured on more than one device."""
    seen: dict[str, set[str]] = {}
    for r in results:
        seen.setdefault(r.model_name, set()).add(device_of(r))
    return lambda r: f"{r.model_name} [{device_of(r)}]" if len(seen[r.model_name]) > 1 else r.model_name


def _plain_log(axis) -> None:
    """Ticks of a log axis as plain numbers (0.5, 1, 2, 5, 10) rather than powers of ten."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())




def _device_text(results: Sequence[Result]) -> str:
    return _joined(devices(results)) or "unknown device"


def _ok_sizes(results: Sequence[Result], has: Callable[[Result], bool]) -> tuple[list[Result], list[int]]:
    chosen = [r for r in results if r.ok and has(r)]
    return chosen, sorted({r.settings.image_size for r in chosen})


def memory_vs_params(results: Sequence[Result]) -> Optional[Figure]:
    """Peak training memory (GiB) vs parameters (M), log-log: filled = measured, hollow = CPU estimate."""
    points, sizes = _ok_sizes(results, lambda r: bool(r.memory and r.params_total and r.memory.peak_train_bytes > 0))
    if not points:
        return None
    name = _namer(points)
    fig = Figure(figsize=(6.5 * len(sizes), 5.0), layout="constrained")
    families = list(FAMILIES) + sorted({r.family or "other" for r in points} - set(FAMILIES))
    for ax, size in zip(fig.subplots(1, len(sizes), squeeze=False)[0], sizes):
        here = [r for r in points if r.settings.image_size == size]
        for family in families:
            colour = FAMILY_COLOURS.get(family, OTHER_COLOUR)
            for estimate in (False, True):
                group = [r for r in here if (r.family or "other") == family and r.memory.is_estimate == estimate]
                if not group:
                    continue
                xs = [r.params_total / 1e6 for r in group]
                ys = [r.memory.peak_train_bytes / GIB for r in group]
                ax.scatter(xs, ys, s=40, label=family + (" (CPU estimate)" if estimate else ""),
                           facecolors="none" if estimate else colour, edgecolors=colour)
                for r, x, y in zip(group, xs, ys):
                    ax.annotate(name(r), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.xaxis)
        _plain_log(ax.yaxis)
        ax.margins(x=0.3, y=0.15)  # room for the labels right of the points
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel(f"peak training memory @ batch {_joined(r.memory.batch_size for r in here)} (GiB)")
        ax.set_title(f"{size}×{size} px")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Peak training memory vs parameters on {_device_text(points)} "
                 "(filled: measured on the GPU, hollow: CPU estimate)")
    return fig


@dataclass(frozen=True)
class Series:
    """One bar per model: `values` by model name; `hatched` names drawn hatched (predicted);
    `notes` by model name, written over the bar."""

    label: str
    values: dict[str, float]
    hatched: frozenset[str] = frozenset()
    notes: dict[str, str] = field(default_factory=dict)


def _bar_groups(ax, names: list[str], series: list[Series]) -> None:
    """Grouped bars: one group per name, one bar per series."""
    width = 0.8 / max(len(series), 1)
    for i, one in enumerate(series):
        shown = [n for n in names if n in one.values]
        xs = [names.index(n) - 0.4 + width * (i + 0.5) for n in shown]
        bars = ax.bar(xs, [one.values[n] for n in shown], width, label=one.label)
        for name, bar in zip(shown, bars):
            bar.set_gid(name)
            if name in one.hatched:
                bar.set_hatch("//")
            if name in one.notes:
                ax.annotate(one.notes[name], (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                            fontsize=6, rotation=90, gid=f"{one.label}|{name}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def _per_mode_bars(results: Sequence[Result], value: Callable[[Result, str], Optional[float]], *, unit: str,
                   title: str, note: Callable[[Result, str], Optional[str]] = lambda r, mode: None
                   ) -> Optional[Figure]:
    """Training and inference panels, one bar per model and image size, of value(result, mode)."""
    shown, sizes = _ok_sizes(results, lambda r: any(value(r, mode) for mode in ("train", "infer")))
    if not shown:
        return None
    name = _namer(shown)
    names = list(dict.fromkeys(name(r) for r in family_order(shown)))
    fig = Figure(figsize=(max(7.0, 0.9 * len(names)) * 2, 5.0), layout="constrained")
    for ax, mode, what in zip(fig.subplots(1, 2, squeeze=False)[0], ("train", "infer"), ("training", "inference")):
        series = []
        for size in sizes:
            here = [r for r in shown if r.settings.image_size == size and value(r, mode)]
            series.append(Series(f"{size}×{size} px", {name(r): value(r, mode) for r in here},
                                 notes={name(r): text for r in here if (text := note(r, mode))}))
        _bar_groups(ax, names, series)
        ax.margins(y=0.12)  # room for the notes over the tallest bars
        ax.set_ylabel(unit)
        ax.set_title(what)
        ax.legend(fontsize=8)
    fig.suptitle(title.format(device=_device_text(shown), batch=_joined(r.throughput.batch_size for r in shown),
                              precision=_joined(r.throughput.precision or r.settings.amp for r in shown)))
    return fig


def _mfu_note(result: Result, mode: str) -> Optional[str]:
    mfu = getattr(result.throughput, f"{mode}_mfu")
    return None if mfu is None else f"{100 * mfu:.1f}%"


def throughput(results: Sequence[Result]) -> Optional[Figure]:
    """Training and inference images/s per model, one bar per image size; MFU over GPU bars."""
    def rate(r: Result, mode: str) -> Optional[float]:
        return getattr(r.throughput, f"{mode}_images_per_s") if r.throughput else None

    with_mfu = any(_mfu_note(r, m) for r in results if r.ok and r.throughput for m in ("train", "infer"))
    return _per_mode_bars(results, rate, unit="images/s", note=_mfu_note,
                          title="Images/s on {device} (batch {batch}, {precision})"
                                + ("; over a bar: MFU, % of the GPU's dense peak" if with_mfu else ""))


def images_per_joule(results: Sequence[Result]) -> Optional[Figure]:
    """Training and inference images per joule per model, one bar per image size; None without energy."""
    def efficiency(r: Result, mode: str) -> Optional[float]:
        return getattr(r.throughput, f"{mode}_images_per_joule") if r.throughput else None

    counters = _joined(ENERGY_SOURCES.get(r.throughput.energy_source, r.throughput.energy_source)
                       for r in results if r.ok and r.throughput and r.throughput.energy_source)
    return _per_mode_bars(results, efficiency, unit="images per joule",
                          title="Images per joule on {device} (batch {batch}, {precision}; "
                                f"energy over the timed blocks: {counters})")


def max_batch(results: Sequence[Result]) -> Optional[Figure]:
    """Largest train and inference batch per model within the budget, one panel per image size."""
    found, sizes = _ok_sizes(results, lambda r: bool(r.max_batch_train or r.max_batch_infer))
    if not found:
        return None
    name = _namer(found)
    fig = Figure(figsize=(max(7.0, 0.9 * len({r.model_name for r in found})) * len(sizes), 5.0),
                 layout="constrained")
    searches = [m for r in found for m in (r.max_batch_train, r.max_batch_infer) if m]
    for ax, size in zip(fig.subplots(1, len(sizes), squeeze=False)[0], sizes):
        here = family_order([r for r in found if r.settings.image_size == size])
        names = list(dict.fromkeys(name(r) for r in here))
        series = []
        for which, label in (("max_batch_train", "train"), ("max_batch_infer", "inference")):
            got = [(r, getattr(r, which)) for r in here if getattr(r, which)]
            series.append(Series(label, {name(r): m.max_batch for r, m in got},
                                 frozenset(name(r) for r, m in got if m.predicted)))
        _bar_groups(ax, names, series)
        ax.set_ylabel("max batch (images)")
        ax.set_title(f"{size}×{size} px")
        ax.legend(fontsize=8)
    budget = _joined(f"{m.budget_bytes / GIB:.1f} GiB" for m in searches)
    predicted = " (hatched: predicted from CPU estimates)" if any(m.predicted for m in searches) else ""
    fig.suptitle(f"Largest batch within a {budget} budget on {_device_text(found)}{predicted}")
    return fig


def paper_vs_measured(results: Sequence[Result]) -> Optional[Figure]:
    """Measured / paper for each published value we measured, grouped by (table, metric, size); log scale."""
    comparisons = compare_with_paper(results)
    if not comparisons:
        return None
    seen: dict[str, set[str]] = {}
    for c in comparisons:
        seen.setdefault(c.model, set()).add(c.device_name)
    label = {c: c.model + (f" [{c.device_name}]" if len(seen[c.model]) > 1 else "") for c in comparisons}
    groups = list(dict.fromkeys((c.table, c.metric, c.image_size) for c in comparisons))
    keys = list(dict.fromkeys(label[c] for c in comparisons))
    colours = {key: f"C{i % 10}" for i, key in enumerate(keys)}
    most = max(sum((c.table, c.metric, c.image_size) == g for c in comparisons) for g in groups)
    width = 0.8 / most
    fig = Figure(figsize=(min(20.0, max(8.0, 0.3 * len(comparisons) + 2.0)), 5.5), layout="constrained")
    ax = fig.subplots()
    legend_done: set[str] = set()
    for gi, group in enumerate(groups):
        members = [c for c in comparisons if (c.table, c.metric, c.image_size) == group]
        for i, c in enumerate(members):
            key = label[c]
            bar = ax.bar(gi + width * (i + 0.5 - len(members) / 2), c.ratio, width, color=colours[key],
                         label=None if key in legend_done else key)[0]
            bar.set_gid(f"{key}|{c.metric}|{c.image_size}|{c.table}")
            legend_done.add(key)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set_xticks(range(len(groups)), [fill(f"T{t} {METRIC_LABELS[m]}", 14) + f"\n{s} px" for t, m, s in groups],
                  fontsize=8)
    ax.set_ylabel("measured / paper")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    ax.set_title("Measured / paper (1 = the paper's value); the paper timed a 16 GB V100")
    return fig


CHARTS: tuple[tuple[str, Callable[[Sequence[Result]], Optional[Figure]]], ...] = (
    ("memory_vs_params", memory_vs_params),
    ("throughput", throughput),
    ("images_per_joule", images_per_joule),
    ("max_batch", max_batch),
    ("paper_vs_measured", paper_vs_measured),
)


def write_charts(results: Sequence[Result], out_dir: str | Path) -> list[Path]:
    """Write every chart with something to plot as NAME.png and NAME.svg; return the paths written.

    Each file is replaced atomically: if saving fails, the previous file of that name is left as it was.
    """
    results = list(results)
    out = Path(out_dir)
    written = []
    for name, make in CHARTS:
        fig = make(results)
        if fig is None:
            continue
        out.mkdir(parents=True, exist_ok=True)
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            with replacing(path) as tmp:  # a full disk mid-savefig must not leave a truncated chart
                fig.savefig(tmp, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)
            written.append(path)
    return written
