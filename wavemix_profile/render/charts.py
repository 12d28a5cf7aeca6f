"""Charts as matplotlib Figures, written as PNG and SVG. Never imports torch, never touches pyplot.

Figures are built on ``matplotlib.figure.Figure`` directly, so no global backend or figure state is
involved; saving renders through Agg (PNG) and the SVG backend. Each chart function returns None
when there is nothing to plot, and :func:`write_charts` then skips that chart.

* ``memory_vs_params``: one panel per image size, peak training memory at the batch size (GiB)
  against parameters (M), log-log, one colour per family, hollow markers for CPU estimates.
* ``throughput``: training and inference images/s, bars per model grouped by image size.
* ``max_batch``: one panel per image size, largest train and inference batch per model; the budget is
  in the title, predicted values are hatched.
* ``paper_vs_measured``: measured / paper for every published value we have, grouped by metric.
"""
from __future__ import annotations

from pathlib import Path
from textwrap import fill
from typing import Callable, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..atomic import replacing
from ..models import FAMILIES
from ..results import Result
from .columns import devices, family_order
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


def _bar_groups(ax, names: list[str], series: list[tuple[str, dict[str, float], set[str]]]) -> None:
    """Grouped bars: one group per name, one bar per series (label, values by name, hatched names)."""
    width = 0.8 / max(len(series), 1)
    for i, (label, values, hatched) in enumerate(series):
        shown = [n for n in names if n in values]
        xs = [names.index(n) - 0.4 + width * (i + 0.5) for n in shown]
        bars = ax.bar(xs, [values[n] for n in shown], width, label=label)
        for name, bar in zip(shown, bars):
            bar.set_gid(name)
            if name in hatched:
                bar.set_hatch("//")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def throughput(results: Sequence[Result]) -> Optional[Figure]:
    """Training and inference images/s per model, one bar per image size."""
    timed, sizes = _ok_sizes(results, lambda r: bool(r.throughput and (r.throughput.train_images_per_s
                                                                        or r.throughput.infer_images_per_s)))
    if not timed:
        return None
    name = _namer(timed)
    names = list(dict.fromkeys(name(r) for r in family_order(timed)))
    fig = Figure(figsize=(max(7.0, 0.9 * len(names)) * 2, 5.0), layout="constrained")
    for ax, field, what in zip(fig.subplots(1, 2, squeeze=False)[0], ("train_images_per_s", "infer_images_per_s"),
                               ("training", "inference")):
        series = []
        for size in sizes:
            values = {name(r): getattr(r.throughput, field) for r in timed
                      if r.settings.image_size == size and getattr(r.throughput, field)}
            series.append((f"{size}×{size} px", values, set()))
        _bar_groups(ax, names, series)
        ax.set_ylabel("images/s")
        ax.set_title(what)
        ax.legend(fontsize=8)
    fig.suptitle(f"Images/s on {_device_text(timed)} (batch {_joined(r.throughput.batch_size for r in timed)}, "
                 f"{_joined(r.throughput.precision or r.settings.amp for r in timed)})")
    return fig


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
            series.append((label, {name(r): m.max_batch for r, m in got},
                           {name(r) for r, m in got if m.predicted}))
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
