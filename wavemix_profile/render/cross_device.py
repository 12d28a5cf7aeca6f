"""The cross-device view: per model and image size, each device's figures side by side, with ratios
against a reference device, and a chart of images/s per device.

A device is a machine's device: its name and its host, so two machines with one GPU model stay two
columns ("NVIDIA A100 (node-a)", "NVIDIA A100 (node-b)"); the host is shown only where a name
needs it. Records older than the host field count as one unknown host. Reads stored Results only:
never imports torch or ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..store.atomic import write_text
from ..core.results import Result
from .chart_style import new_figure, save_figure, scale_axis
from .charts import FAMILY_COLOURS, OTHER_COLOUR
from .columns import Machine, family_order, machine_of, machines
from .paper import GIB

MARKDOWN_NAME = "cross_device.md"
CHART_NAME = "images_per_s_by_device"
# One colour per device, apart from the family hues the model names carry (Paul Tol's muted scheme).
DEVICE_COLOURS = ("#332288", "#88CCEE", "#44AA99", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499", "#117733")


@dataclass(frozen=True)
class Metric:
    title: str
    unit: str
    value: Callable[[Result], Optional[float]]
    estimate: Callable[[Result], bool] = lambda r: False   # shown with "~": a CPU estimate, not measured


def _train_ips(r: Result) -> Optional[float]:
    return r.throughput.train_images_per_s if r.throughput else None


def _infer_ips(r: Result) -> Optional[float]:
    return r.throughput.infer_images_per_s if r.throughput else None


METRICS = (
    Metric("train images/s", "img/s", _train_ips),
    Metric("inference images/s", "img/s", _infer_ips),
    Metric("peak train memory", "GiB", lambda r: r.memory.peak_train_bytes / GIB if r.memory else None,
           lambda r: bool(r.memory and r.memory.is_estimate)),
    Metric("max train batch", "images", lambda r: r.max_batch_train.max_batch if r.max_batch_train else None,
           lambda r: bool(r.max_batch_train and r.max_batch_train.predicted)),
)


def pick_reference(found: Sequence[Machine], wanted: Optional[str]) -> Machine:
    """The machine `wanted` names: its label, or its device name or host when that picks one (case
    aside); default the first. ValueError naming the accepted labels otherwise."""
    if not wanted:
        return found[0]
    text = wanted.strip().lower()
    for match in (lambda m: m.label.lower() == text, lambda m: m.device_name.lower() == text,
                  lambda m: (m.host or "").lower() == text):
        hits = [m for m in found if match(m)]
        if len(hits) == 1:
            return hits[0]
    raise ValueError(f"unknown reference device {wanted!r}; accepted: "
                     + ", ".join(repr(m.label) for m in found))


@dataclass(frozen=True)
class Row:
    model_name: str
    family: Optional[str]
    image_size: int
    cells: dict[Machine, Result]   # the last successful result of this model and size on each machine


def rows(results: Sequence[Result], found: Sequence[Machine]) -> list[Row]:
    """One row per model and image size, in the paper's family order, then by size."""
    by_id = {(m.device_name, m.host): m for m in found}
    table: dict[tuple[str, int], dict[Machine, Result]] = {}
    first: dict[tuple[str, int], Result] = {}
    for r in family_order([r for r in results if r.ok and machine_of(r)]):
        key = (r.model_name, r.settings.image_size)
        first.setdefault(key, r)
        table.setdefault(key, {})[by_id[machine_of(r)]] = r
    return [Row(k[0], first[k].family, k[1], table[k]) for k in sorted(table, key=lambda k: k[1])]  # stable


def _number(value: float, unit: str) -> str:
    if unit == "images":
        return f"{value:,.0f}"
    if unit == "GiB":
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def cell(row: Row, machine: Machine, reference: Machine, metric: Metric) -> str:
    """"value" for the reference, "value (ratio×)" for the others; "–" where nothing was measured."""
    result = row.cells.get(machine)
    value = metric.value(result) if result else None
    if value is None:
        return "–"
    text = ("~" if metric.estimate(result) else "") + _number(value, metric.unit)
    if machine == reference:
        return text
    base_result = row.cells.get(reference)
    base = metric.value(base_result) if base_result else None
    return f"{text} ({value / base:.2f}×)" if base else text


def _settings_line(machine: Machine, results: Sequence[Result]) -> str:
    mine = [r for r in results if r.ok and machine_of(r) == (machine.device_name, machine.host)]
    timed = {r.throughput.batch_size for r in mine if r.throughput}
    amp = {r.settings.amp for r in mine}
    return (f"- **{machine.label}**: {len(mine)} measurements; host {machine.host or 'unknown'}; "
            f"throughput batch {', '.join(map(str, sorted(timed))) or '–'}; AMP {', '.join(sorted(amp)) or '–'}")


def render_cross_device(results: Sequence[Result], reference: Optional[str] = None, *, command: str = "") -> str:
    """The cross-device Markdown: a table per image size and figure, devices as columns, each figure
    with its ratio to the reference device (device / reference: above 1 is more images/s, more
    memory, a larger batch)."""
    found = machines(results)
    base = pick_reference(found, reference)
    lines = ["# Across devices", ""]
    if command:
        lines += [f"Rendered by `{command}`.", ""]
    lines += [f"Reference device: **{base.label}**; ratios are device / reference. `~`: a CPU estimate or "
              "prediction, not a GPU measurement; `–`: not measured or failed.", ""]
    lines += [_settings_line(m, results) for m in found] + [""]
    table = rows(results, found)
    for size in dict.fromkeys(r.image_size for r in table):
        for metric in METRICS:
            these = [r for r in table if r.image_size == size]
            if not any(metric.value(res) is not None for r in these for res in r.cells.values()):
                continue
            lines += [f"## {metric.title} ({metric.unit}), {size}×{size} px", "",
                      "| model | " + " | ".join(m.label for m in found) + " |",
                      "| :--- | " + " | ".join("---:" for _ in found) + " |"]
            lines += ["| " + r.model_name + " | " + " | ".join(cell(r, m, base, metric) for m in found) + " |"
                      for r in these]
            lines.append("")
    return "\n".join(lines)


def images_per_s_chart(results: Sequence[Result], reference: Optional[str] = None):
    """Grouped bars of train and inference images/s, one bar per device, models along x with their
    names in their family's colour; None without two devices' throughput."""
    found = machines(results)
    table = [r for r in rows(results, found) if any(_train_ips(x) or _infer_ips(x) for x in r.cells.values())]
    if len(found) < 2 or not table:
        return None
    base = pick_reference(found, reference)
    sizes = len({r.image_size for r in table})
    fig, axes = new_figure(2, 1, panel=(max(7.0, 0.3 * len(table) * len(found) + 2.0), 3.6), extra_height=1.2)
    width = 0.8 / len(found)
    for ax, (mode, value) in zip(axes, (("train", _train_ips), ("inference", _infer_ips))):
        shown = []
        for j, machine in enumerate(found):
            xs = [i + (j - (len(found) - 1) / 2) * width for i in range(len(table))]
            ys = [(value(r.cells[machine]) if machine in r.cells else None) or 0 for r in table]
            shown += [y for y in ys if y > 0]
            ax.bar(xs, ys, width, color=DEVICE_COLOURS[j % len(DEVICE_COLOURS)],
                   label=machine.label + (" (reference)" if machine == base else ""))
        log = scale_axis(ax, "y", shown, zero=True)
        ax.set_ylabel(f"{mode} images/s" + (" (log)" if log else ""))
        ax.set_xticks(range(len(table)))
        ax.set_xticklabels([r.model_name + (f" @ {r.image_size} px" if sizes > 1 else "") for r in table],
                           rotation=30, ha="right", fontsize=8)
        for tick, r in zip(ax.get_xticklabels(), table):
            tick.set_color(FAMILY_COLOURS.get(r.family or "", OTHER_COLOUR))
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=1, fontsize=8,
               title="Images/s per device (model names in their family's colour)", title_fontsize=10, frameon=False)
    return fig


def write_cross_device(results: Sequence[Result], out: str | Path, *, reference: Optional[str] = None,
                       command: str = "") -> list[Path]:
    """cross_device.md and the images/s chart (PNG and SVG) in `out` when `results` hold more than
    one device; nothing otherwise. Each file replaced atomically. ValueError for an unknown reference."""
    if len(machines(results)) < 2:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKDOWN_NAME, render_cross_device(results, reference, command=command))
    written = [out / MARKDOWN_NAME]
    fig = images_per_s_chart(results, reference)
    if fig is not None:
        written += save_figure(fig, out, CHART_NAME)
    return written
