"""Cost against image size (`wavemix-profile scale`): fitted exponents, tables and a log-log chart.

Reads stored Results only; never imports torch. For each model and cost (forward MACs per image,
peak training memory at the batch size, largest training batch within the budget) the exponent k
of cost ∝ size^k is the least-squares slope of log(cost) on log(size) over the sizes measured.
Where a model's layers change with the image size (a patch size that keeps a token grid, a stem
that strides large inputs down), the caller passes that rule, from the zoo's metadata, in `adapts`;
tables and chart say so beside the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator
from rich.table import Table

from ..core.results import Result
from .chart_style import PLAIN_TICKS, fitted_title, freeze_layout, new_figure, plain_log
from .charts import FAMILY_COLOURS, OTHER_COLOUR
from .columns import devices, family_order
from .paper import GIB

MARKS = ("†", "‡", "§", "¶")  # one per distinct size rule, in the order met
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
SCALE_PANEL = (5.0, 4.0)   # inches, one panel (and the legend's cell)
LEGEND_ROWS = 24           # legend entries in one column; more go in two
LEGEND_LINE_IN = 0.16      # inches per legend line at 7.5 pt, with its spacing


@dataclass(frozen=True)
class ScaleMetric:
    """One cost plotted against image size: `value` reads it from a Result (None: not measured)."""

    key: str
    label: str      # a column header, with units
    value: Callable[[Result], Optional[float]]
    short: str      # a word or two, for the legend's exponents


def _macs(r: Result) -> Optional[float]:
    return r.flops.forward_macs_per_image / 1e9 if r.flops else None


def _train_memory(r: Result) -> Optional[float]:
    return r.memory.peak_train_bytes / GIB if r.memory else None


def _max_train(r: Result) -> Optional[float]:
    found = r.max_batch_train
    return float(found.max_batch) if found and found.max_batch > 0 else None


METRICS = (
    ScaleMetric("forward_macs", "forward MACs/image (G)", _macs, "MACs"),
    ScaleMetric("peak_train_memory", "peak train memory (GiB)", _train_memory, "memory"),
    ScaleMetric("max_train_batch", "max train batch (images)", _max_train, "max batch"),
)


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log(value) on log(size), the k of value ∝ size^k; None with fewer than
    two distinct sizes. Sizes and values must be positive."""
    if len(sizes) != len(values):
        raise ValueError(f"{len(sizes)} sizes but {len(values)} values")
    if any(v <= 0 for v in (*sizes, *values)):
        raise ValueError("sizes and values must be positive to fit on a log-log scale")
    xs, ys = [math.log(s) for s in sizes], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs) if xs else 0.0, sum(ys) / len(ys) if ys else 0.0
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


@dataclass(frozen=True)
class ScaleSeries:
    """One model's cost at each image size it was measured at, with the fitted exponent."""

    model_name: str
    family: Optional[str]
    image_sizes_px: tuple[int, ...]
    values: tuple[float, ...]
    exponent: Optional[float]


def scale_series(results: Sequence[Result], metric: ScaleMetric) -> list[ScaleSeries]:
    """One series per model (family order), over the sizes where `metric` was measured."""
    ordered = family_order([r for r in results if metric.value(r) is not None])
    out = []
    for name in dict.fromkeys(r.model_name for r in ordered):
        points = sorted({r.settings.image_size: v for r in ordered if r.model_name == name
                         and (v := metric.value(r)) is not None}.items())
        if not points:
            continue
        sizes, values = tuple(s for s, _ in points), tuple(v for _, v in points)
        family = next(r.family for r in ordered if r.model_name == name)
        out.append(ScaleSeries(name, family, sizes, values, fit_exponent(sizes, values)))
    return out


def rule_marks(adapts: Mapping[str, str]) -> dict[str, str]:
    """A mark (†, ‡, ...) for each distinct size rule, in the order met."""
    rules = list(dict.fromkeys(rule for rule in adapts.values() if rule))
    return {rule: MARKS[i % len(MARKS)] * (1 + i // len(MARKS)) for i, rule in enumerate(rules)}


def _marked(name: str, adapts: Mapping[str, str], marks: Mapping[str, str]) -> str:
    return name + marks[adapts[name]] if adapts.get(name) else name


def _exponent_text(k: Optional[float]) -> str:
    if k is None:
        return "–"
    text = f"{k:.2f}"
    return "0.00" if text == "-0.00" else text


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _conditions(results: Sequence[Result]) -> str:
    ok = [r for r in results if r.ok]
    batch = ", ".join(dict.fromkeys(str(r.settings.batch_size) for r in ok))
    budgets = [m.budget_bytes for r in ok for m in (r.max_batch_train,) if m]
    budget = ", ".join(dict.fromkeys(f"{b / GIB:.1f} GiB" for b in budgets))
    amp = ", ".join(dict.fromkeys(r.settings.amp for r in ok))
    estimate = any(r.memory and r.memory.is_estimate for r in ok)
    where = ", ".join(devices(ok)) or "unknown device"
    return (f"{where}; memory at batch {batch or '–'}, AMP {amp or '–'}"
            + (" (CPU estimate of the tensors)" if estimate else "")
            + (f"; max batch within {budget}" + (" (predicted)" if estimate else "") if budget else ""))


def scale_tables(results: Sequence[Result], adapts: Mapping[str, str]) -> list[Table]:
    """One rich table per cost: a row per model, a column per size, then the fitted exponent."""
    marks = rule_marks(adapts)
    tables = []
    for metric in METRICS:
        series = scale_series(results, metric)
        if not series:
            continue
        sizes = sorted({s for one in series for s in one.image_sizes_px})
        table = Table(title=f"{metric.label} against image size · {_conditions(results)}")
        table.add_column("model")
        table.add_column("family")
        for size in sizes:
            table.add_column(f"{size} px", justify="right")
        table.add_column("exponent k", justify="right")
        for one in series:
            got = dict(zip(one.image_sizes_px, one.values))
            table.add_row(_marked(one.model_name, adapts, marks), one.family or "other",
                          *(_number(got[s]) if s in got else "–" for s in sizes), _exponent_text(one.exponent))
        table.caption = _rules_note(marks)
        tables.append(table)
    return tables


def _rules_note(marks: Mapping[str, str]) -> str:
    exponent = "k: least-squares slope of log(cost) on log(size), cost ∝ size^k"
    return "; ".join([exponent, *(f"{mark}: {rule}" for rule, mark in marks.items())])


def render_scale_markdown(results: Sequence[Result], adapts: Mapping[str, str], *, command: str,
                          chart: Optional[str] = None, skipped: Sequence[str] = ()) -> str:
    """scale.md: the command, the chart, and one table per cost with the fitted exponents."""
    marks = rule_marks(adapts)
    lines = ["# Cost against image size", "", f"Command: `{command}`", "", _conditions(results) + ".", ""]
    if chart:
        lines += [f"![cost against image size]({chart})", ""]
    for metric in METRICS:
        series = scale_series(results, metric)
        if not series:
            continue
        sizes = sorted({s for one in series for s in one.image_sizes_px})
        lines += [f"## {metric.label}", "", "| model | family | " + " | ".join(f"{s} px" for s in sizes)
                  + " | exponent k |", "| --- | --- | " + "---: | " * len(sizes) + "---: |"]
        for one in series:
            got = dict(zip(one.image_sizes_px, one.values))
            cells = [_number(got[s]) if s in got else "–" for s in sizes]
            lines.append(f"| {_marked(one.model_name, adapts, marks)} | {one.family or 'other'} | "
                         + " | ".join(cells) + f" | {_exponent_text(one.exponent)} |")
        lines.append("")
    lines += [_rules_note(marks) + ".", ""]
    if skipped:
        lines += ["Not measured (the model does not take the size): " + "; ".join(skipped) + ".", ""]
    return "\n".join(lines)


def scale_chart(results: Sequence[Result], adapts: Mapping[str, str]) -> Optional[Figure]:
    """Log-log panels, cost against image size, one line per model coloured by family, dashed and
    marked where the model's layers change with size; one legend, in the cell beside the panels, names
    each model once with its fitted exponent in every panel."""
    panels = [(m, s) for m in METRICS if (s := scale_series(results, m))]
    if not panels:
        return None
    marks = rule_marks(adapts)
    models = list(dict.fromkeys(one.model_name for _, series in panels for one in series))
    legend_cols = 1 if len(models) <= LEGEND_ROWS else 2
    cells = len(panels) + 1                       # the panels, then the legend's cell
    cols = 2 if cells == 4 else cells
    rows = -(-cells // cols)
    entry_lines = -(-len(models) // legend_cols) + 2 + len(marks)  # entries, title, the dashed line, rules
    height = max(SCALE_PANEL[1], LEGEND_LINE_IN * entry_lines + 0.4)  # the legend's cell holds it all
    fig, axes = new_figure(rows, cols, panel=(SCALE_PANEL[0], height), extra_height=0.7)
    style = {}
    for ax, (metric, series) in zip(axes, panels):
        for one in series:
            family = one.family or "other"
            if one.model_name not in style:
                index = sum(f == family for f, _ in style.values())
                style[one.model_name] = (family, MARKERS[index % len(MARKERS)])
            rule = adapts.get(one.model_name, "")
            ax.plot(one.image_sizes_px, one.values, color=FAMILY_COLOURS.get(family, OTHER_COLOUR),
                    marker=style[one.model_name][1], linestyle="--" if rule else "-", markersize=5,
                    gid=f"{metric.key}|{one.model_name}")
        sizes = sorted({s for one in series for s in one.image_sizes_px})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_major_formatter(PLAIN_TICKS)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=8, labelrotation=45 if len(sizes) > 4 else 0)
        ax.tick_params(axis="y", labelsize=8)
        values = [v for one in series for v in one.values]
        plain_log(ax.yaxis, decades=math.log10(max(values) / min(values)))
        ax.set_xlabel("image size (px, square input)", fontsize=9)
        ax.set_ylabel(_axis_label(metric, results), fontsize=9)
        ax.set_title(metric.label.split(" (")[0], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    key = axes[len(panels)]
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    exponents = {m.key: {one.model_name: one.exponent for one in series} for m, series in panels}
    handles = []
    for name in models:
        family, marker = style[name]
        ks = " · ".join(_exponent_text(exponents[m.key].get(name)) for m, _ in panels)
        handles.append(Line2D([], [], color=FAMILY_COLOURS.get(family, OTHER_COLOUR), marker=marker, markersize=5,
                              linestyle="--" if adapts.get(name) else "-",
                              label=f"{_marked(name, adapts, marks)}   k = {ks}"))
    if marks:
        handles.append(Line2D([], [], color="0.4", linestyle="--", label="dashed: layers change with the image size"))
        handles += [Line2D([], [], linestyle="", label=f"{mark} {rule}") for rule, mark in marks.items()]
    key.legend(handles=handles, loc="upper left", ncols=legend_cols, fontsize=7.5, frameon=False, borderaxespad=0,
               title="model   k (cost ∝ size^k) of " + " · ".join(m.short for m, _ in panels),
               title_fontsize=8, alignment="left")
    fitted_title(fig, f"Cost against image size, log-log\n{_conditions(results)}", 10)
    freeze_layout(fig)
    return fig


def _axis_label(metric: ScaleMetric, results: Sequence[Result]) -> str:
    ok = [r for r in results if r.ok]
    if metric.key == "peak_train_memory":
        batch = ", ".join(dict.fromkeys(str(r.settings.batch_size) for r in ok))
        return f"peak training memory @ batch {batch} (GiB)"
    if metric.key == "max_train_batch":
        budget = ", ".join(dict.fromkeys(f"{r.max_batch_train.budget_bytes / GIB:.0f} GiB"
                                         for r in ok if r.max_batch_train))
        return f"max training batch within {budget} (images)"
    return "forward MACs per image (G)"
