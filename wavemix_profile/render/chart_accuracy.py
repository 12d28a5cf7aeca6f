"""Top-1 accuracy against measured cost, one chart per dataset, with the Pareto front drawn.

Each chart has four panels: accuracy against peak training memory, training images/s (with the
spread of the repeats as error bars: ± CV × median), parameters and forward MACs per image. An
accuracy (wavemix_profile.core.accuracy) meets an ok stored result of the same display name and image
size. A point is on the Pareto front when no other point of the panel is at least as good in both
cost and accuracy and better in one; the front is drawn as the staircase of the best accuracy
reachable at each cost.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..core.accuracy import Accuracy
from ..core.results import Result
from .chart_labels import PointLabel, place_labels
from .chart_style import (device_text, families_present, family_colour, family_of, figure_legend, fitted_title,
                          freeze_layout, joined, namer, new_figure, scale_axis)
from .paper import GIB

PARETO_COLOUR = "black"


def pareto_front(points: Sequence[tuple[float, float]], *, higher_cost_is_better: bool = False) -> list[int]:
    """Indices of the (cost, accuracy) points no other point dominates, in input order.

    Higher accuracy is better; lower cost is better unless `higher_cost_is_better` (throughput).
    Identical points do not dominate each other. A sweep from the best cost keeps the best accuracy
    seen at strictly better costs: a point is on the front iff its accuracy beats that and is the
    best at its own cost."""
    sign = -1.0 if higher_cost_is_better else 1.0
    order = sorted(range(len(points)), key=lambda i: (sign * points[i][0], -points[i][1]))
    front, best_before, k = [], float("-inf"), 0
    while k < len(order):
        cost = sign * points[order[k]][0]
        same = [i for i in order[k:] if sign * points[i][0] == cost]
        top = points[same[0]][1]
        if top > best_before:
            front += [i for i in same if points[i][1] == top]
        best_before = max(best_before, top)
        k += len(same)
    return sorted(front)


def staircase(front: Sequence[tuple[float, float]], *, higher_cost_is_better: bool) -> tuple[list, list]:
    """The front's points sorted by cost, joined by steps: the best accuracy reachable at each cost."""
    xs, ys = [], []
    for k, (x, y) in enumerate(front):
        if k:  # lower cost better: hold the last accuracy until x; higher better: step up at the last x
            corner = (x, ys[-1]) if not higher_cost_is_better else (xs[-1], y)
            xs.append(corner[0])
            ys.append(corner[1])
        xs.append(x)
        ys.append(y)
    return xs, ys


@dataclass(frozen=True)
class Cost:
    key: str
    label: str                                  # axis label with its unit; "{batch}" filled in
    value: Callable[[Result], Optional[float]]
    higher_is_better: bool = False
    error: Callable[[Result], float] = lambda r: 0.0
    per_device: bool = True                     # False: the same on every device, one point per model


def _memory(r: Result) -> Optional[float]:
    return r.memory.peak_train_bytes / GIB if r.memory and r.memory.peak_train_bytes > 0 else None


def _train_rate(r: Result) -> Optional[float]:
    return r.throughput.train_images_per_s if r.throughput else None


COSTS = (
    Cost("memory", "peak training memory @ batch {batch} (GiB)", _memory),
    Cost("train_images_per_s", "training throughput (images/s, ± CV)", _train_rate, higher_is_better=True,
         error=lambda r: (r.throughput.train_cv or 0.0) * r.throughput.train_images_per_s),
    Cost("params", "parameters (M)", lambda r: r.params_total / 1e6 if r.params_total else None, per_device=False),
    Cost("macs", "forward MACs per image (G)",
         lambda r: r.flops.forward_macs_per_image / 1e9 if r.flops else None, per_device=False),
)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def accuracy_charts(results: Sequence[Result], accuracies: Sequence[Accuracy]) -> list[tuple[str, Figure]]:
    """(file stem, figure) per dataset and image size with at least one accuracy meeting a result."""
    usable = [r for r in results if r.ok]
    groups = list(dict.fromkeys((a.dataset, a.image_size) for a in accuracies))
    sizes_of = {}
    for dataset, size in groups:
        sizes_of.setdefault(dataset, []).append(size)
    out = []
    for dataset, size in groups:
        top1 = {a.model: a for a in accuracies if (a.dataset, a.image_size) == (dataset, size)}
        points = [(r, top1[r.model_name]) for r in usable
                  if r.settings.image_size == size and r.model_name in top1]
        if not points:
            continue
        stem = f"accuracy_{slug(dataset)}" + (f"_{size}px" if len(sizes_of[dataset]) > 1 else "")
        out.append((stem, accuracy_chart(dataset, size, points)))
    return out


def accuracy_chart(dataset: str, size: int, points: list[tuple[Result, Accuracy]]) -> Figure:
    name = namer([r for r, _ in points])
    fig, axes = new_figure(2, 2, extra_height=1.1)
    estimates = False
    panels = []
    for ax, cost in zip(axes, COSTS):
        lines: list = []
        here, seen = [], set()
        for r, acc in points:
            value = cost.value(r)
            if value is None or (not cost.per_device and r.model_name in seen):
                continue
            seen.add(r.model_name)
            here.append((r, acc, value))
        panels.append((ax, cost, here, lines))
        if not here:
            ax.set_axis_off()
            ax.set_title(f"no {cost.label.split(' (')[0].format(batch='').strip()} stored", fontsize=9)
            continue
        xs = [v for _, _, v in here]
        ys = [a.top1_percent for _, a, _ in here]
        errs = [cost.error(r) for r, _, _ in here]
        for family in families_present(r for r, _, _ in here):
            mine = [i for i, (r, _, _) in enumerate(here) if family_of(r) == family]
            colour = family_colour(family)
            hollow = [i for i in mine if cost.key == "memory" and here[i][0].memory.is_estimate]
            for group, face in ((sorted(set(mine) - set(hollow)), colour), (hollow, "none")):
                if group:
                    ax.scatter([xs[i] for i in group], [ys[i] for i in group], s=36, facecolors=face,
                               edgecolors=colour, linewidths=1.2, zorder=3, gid=f"{family}|{cost.key}")
            if any(errs[i] for i in mine):
                ax.errorbar([xs[i] for i in mine], [ys[i] for i in mine], xerr=[errs[i] for i in mine], fmt="none",
                            ecolor=colour, elinewidth=0.9, capsize=2, zorder=2)
            estimates |= bool(hollow)
        front = pareto_front(list(zip(xs, ys)), higher_cost_is_better=cost.higher_is_better)
        ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=110, facecolors="none",
                   edgecolors=PARETO_COLOUR, linewidths=0.8, alpha=0.7, zorder=2, gid="pareto-points")
        stairs = staircase(sorted((xs[i], ys[i]) for i in front), higher_cost_is_better=cost.higher_is_better)
        ax.plot(*stairs, color=PARETO_COLOUR, lw=1.0, alpha=0.6, zorder=1, gid="pareto")
        lines.append(stairs)
        lines += [([x - e, x + e], [y, y]) for x, y, e in zip(xs, ys, errs) if e]
        scale_axis(ax, "x", xs, reach=[x - e for x, e in zip(xs, errs)] + [x + e for x, e in zip(xs, errs)],
                   pad=0.12)
        scale_axis(ax, "y", ys, pad=0.12)
        batch = joined(r.memory.batch_size for r, _, _ in here if r.memory)
        ax.set_xlabel(cost.label.format(batch=batch), fontsize=9)
        ax.set_ylabel(f"{dataset} top-1 accuracy (%)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="major", alpha=0.25)
    _legend(fig, families_present(r for r, _ in points), estimates)
    sources = joined(a.source for _, a in points)
    classes = joined(r.settings.num_classes for r, _ in points)
    fitted_title(fig, f"{dataset} ({size}×{size} px): top-1 accuracy against cost, Pareto front in black\n"
                 f"accuracy: {sources}; costs measured on {device_text([r for r, _ in points])}, "
                 f"{classes}-class head", 10)
    freeze_layout(fig)
    for ax, cost, here, lines in panels:
        label = name if cost.per_device else (lambda r: r.model_name)
        place_labels(ax, [PointLabel(v, a.top1_percent, label(r), gid=f"label|{cost.key}|{label(r)}")
                          for r, a, v in here], lines=lines)
    return fig


def _legend(fig: Figure, families: list[str], estimates: bool) -> None:
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=family_colour(f), label=f) for f in families]
    handles.append(Line2D([], [], color=PARETO_COLOUR, alpha=0.6, lw=1.0, marker="o", ms=10, mfc="none",
                          label="Pareto front (ringed)"))
    if estimates:
        handles.append(Line2D([], [], ls="", marker="o", ms=6, mfc="none", color="0.4",
                              label="hollow: CPU estimate of GPU memory"))
    figure_legend(fig, handles)
