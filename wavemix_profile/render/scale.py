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
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator
from rich.table import Table

from ..results import Result
from .chart_style import plain_log
from .charts import FAMILY_COLOURS, OTHER_COLOUR
from .columns import devices, family_order
from .paper import GIB

MARKS = ("†", "‡", "§", "¶")  # one per distinct size rule, in the order met
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@dataclass(frozen=True)
class ScaleMetric:
    """One cost plotted against image size: `value` reads it from a Result (None: not measured)."""

    key: str
    label: str      # a column header, with units
    value: Callable[[Result], Optional[float]]


def _macs(r: Result) -> Optional[float]:
    return r.flops.forward_macs_per_image / 1e9 if r.flops else None


def _train_memory(r: Result) -> Optional[float]:
    return r.memory.peak_train_bytes / GIB if r.memory else None


def _max_train(r: Result) -> Optional[float]:
    found = r.max_batch_train
    return float(found.max_batch) if found and found.max_batch > 0 else None


METRICS = (
    ScaleMetric("forward_macs", "forward MACs/image (G)", _macs),
    ScaleMetric("peak_train_memory", "peak train memory (GiB)", _train_memory),
    ScaleMetric("max_train_batch", "max train batch (images)", _max_train),
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
    """Three log-log panels, cost against image size, one line per model coloured by family; the
    fitted exponent in each legend; dashed, marked lines for models whose layers change with size."""
    panels = [(m, s) for m in METRICS if (s := scale_series(results, m))]
    if not panels:
        return None
    marks = rule_marks(adapts)
    fig = Figure(figsize=(6.0 * len(panels), 7.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, series) in zip(axes, panels):
        seen: dict[str, int] = {}
        for one in series:
            family = one.family or "other"
            index = seen[family] = seen.get(family, -1) + 1
            rule = adapts.get(one.model_name, "")
            ax.plot(one.image_sizes_px, one.values, color=FAMILY_COLOURS.get(family, OTHER_COLOUR),
                    marker=MARKERS[index % len(MARKERS)], linestyle="--" if rule else "-", markersize=5,
                    label=f"{_marked(one.model_name, adapts, marks)}  k = {_exponent_text(one.exponent)}",
                    gid=f"{metric.key}|{one.model_name}")
        sizes = sorted({s for one in series for s in one.image_sizes_px})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=8, labelrotation=45)
        values = [v for one in series for v in one.values]
        plain_log(ax.yaxis, decades=math.log10(max(values) / min(values)))
        ax.set_xlabel("image size (px, square input)")
        ax.set_ylabel(_axis_label(metric, results))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncols=2, frameon=False,
                  title="model (k: cost ∝ size^k)", title_fontsize=8)
    fig.suptitle(f"Cost against image size, log-log, on {_conditions(results)}", fontsize=11)
    if marks:
        fig.text(0.5, 0.005, "dashed: the layers change with the image size. "
                 + "; ".join(f"{mark} {rule}" for rule, mark in marks.items()),
                 ha="center", va="bottom", fontsize=8)
        fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
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
