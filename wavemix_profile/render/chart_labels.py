"""Deterministic placement of point labels so that no two overlap, nor cover a marker or leave the axes.

Greedy: the most crowded points choose first; each label tries positions around its point (right,
left, above-right, above-left, ... at growing distances), measured in pixels with the Agg renderer,
and takes the first that lies inside the axes, overlaps nothing placed so far, no marker and no given
obstacle, and is nearer its own point than any other point (so no label reads as another's). A
label set further than a marker's width from its point gets a thin leader line. Call after the layout is frozen (chart_style.freeze_layout) and the limits are set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from matplotlib.transforms import Bbox

from .chart_style import LABEL_FONT

# Directions in order of preference: right, left, upper right, upper left, lower right, lower left,
# above, below; then half-steps for crowded spots.
DIRECTIONS = ((1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1), (0, 1), (0, -1),
              (0.5, 1), (-0.5, 1), (0.5, -1), (-0.5, -1))
GAPS_PT = (1.5, 5, 10, 16, 24, 34, 46, 60, 76)  # distance from the marker's edge to the label's box
LEADER_FROM_PT = 9                              # labels further out than this get a leader line
MARKER_RADIUS_PT = 5.5                          # of a scatter marker (36-40 pt^2) or its ring, with a margin


@dataclass(frozen=True)
class PointLabel:
    x: float          # data coordinates of the point
    y: float
    text: str
    gid: str = ""     # set on the annotation, so tests and SVG readers can find it


def _distance(box: tuple, x: float, y: float) -> float:
    dx = max(box[0] - x, x - box[2], 0.0)
    dy = max(box[1] - y, y - box[3], 0.0)
    return (dx * dx + dy * dy) ** 0.5


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _line_boxes(ax, lines: Sequence[tuple[Sequence[float], Sequence[float]]], step_px: float) -> list[tuple]:
    """Small boxes every `step_px` along polylines given in data coordinates."""
    boxes = []
    for xs, ys in lines:
        pts = ax.transData.transform(list(zip(xs, ys)))
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            n = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) / step_px))
            for k in range(n + 1):
                x, y = x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n
                boxes.append((x - 1, y - 1, x + 1, y + 1))
    return boxes


def place_labels(ax, labels: Sequence[PointLabel], *, obstacles: Sequence[Bbox] = (),
                 lines: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
                 fontsize: float = LABEL_FONT) -> list:
    """Annotate every label beside its point without overlaps where the axes allow; returns the annotations.

    `obstacles` are extra display-space boxes to keep clear of (a legend, notes); `lines` are
    polylines (xs, ys) in data coordinates that labels should not cross (a front, error bars).
    Every point in `labels` also counts as a marker to keep clear of."""
    if not labels:
        return []
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72
    frame = ax.get_window_extent(renderer)
    inside = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
    anchors = [tuple(ax.transData.transform((lab.x, lab.y))) for lab in labels]
    radius = MARKER_RADIUS_PT * px_per_pt
    taken = [(x - radius, y - radius, x + radius, y + radius) for x, y in anchors]
    taken += [tuple(b.extents) for b in obstacles] + _line_boxes(ax, lines, 3 * px_per_pt)
    sizes = []
    for lab in labels:
        probe = ax.text(0, 0, lab.text, fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((box.width + 2, box.height + 1))  # a pixel of air around each label

    def crowd(i: int) -> int:
        x, y = anchors[i]
        return sum(abs(x - u) < 80 * px_per_pt and abs(y - v) < 20 * px_per_pt for u, v in anchors)

    out = [None] * len(labels)
    for i in sorted(range(len(labels)), key=lambda i: (-crowd(i), anchors[i][0], anchors[i][1])):
        (x, y), (w, h) = anchors[i], sizes[i]
        best = None
        for gap_pt in GAPS_PT:
            gap = radius + gap_pt * px_per_pt
            for dx, dy in DIRECTIONS:
                cx = x + dx * (gap + w / 2) if abs(dx) == 1 else x + dx * w / 2
                cy = y + dy * (gap + h / 2) if dy else y
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                if box[0] < inside[0] or box[1] < inside[1] or box[2] > inside[2] or box[3] > inside[3]:
                    continue
                own = _distance(box, x, y)
                cost = sum(_overlap(box, t) for t in taken) + sum(
                    1.0 for j, (u, v) in enumerate(anchors) if j != i and _distance(box, u, v) < own)
                if best is None or cost < best[0]:
                    best = (cost, gap_pt, cx, cy, box)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        if best is None:  # nowhere inside the axes: to the right, as a last resort
            best = (0.0, GAPS_PT[0], x + radius + w / 2, y, (x + radius, y - h / 2, x + radius + w, y + h / 2))
        _, gap_pt, cx, cy, box = best
        taken.append(box)
        leader = gap_pt > LEADER_FROM_PT
        out[i] = ax.annotate(
            labels[i].text, (labels[i].x, labels[i].y),
            xytext=((cx - x) / px_per_pt, (cy - y) / px_per_pt), textcoords="offset points",
            ha="center", va="center", fontsize=fontsize, gid=labels[i].gid or None, annotation_clip=False,
            arrowprops=dict(arrowstyle="-", color="0.55", lw=0.5, shrinkA=0,
                            shrinkB=MARKER_RADIUS_PT) if leader else None)
        out[i].set_in_layout(False)
    return out

