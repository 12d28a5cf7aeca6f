"""Every chart of a comparison, written as PNG and SVG. Never imports torch, never touches pyplot.

The charts themselves live beside this module: chart_costs (memory against parameters, throughput,
images per joule, max batch), chart_paper (measured / paper) and chart_accuracy (top-1 accuracy
against each cost, with the Pareto front, one chart per dataset). chart_style holds what they share:
one colour per family, log axes where values span more than 10x, and figure output; chart_labels
places point labels so that none overlap. A chart with nothing to plot is skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from matplotlib.figure import Figure

from ..core.accuracy import Accuracy, chart_accuracies
from ..core.results import Result
from .chart_accuracy import accuracy_charts
from .chart_costs import images_per_joule, max_batch, memory_vs_params, throughput
from .chart_paper import paper_vs_measured
from .chart_style import FAMILY_COLOURS, FORMATS, OTHER_COLOUR, save_figures

__all__ = ["CHARTS", "FAMILY_COLOURS", "FORMATS", "OTHER_COLOUR", "images_per_joule", "max_batch",
           "memory_vs_params", "paper_vs_measured", "throughput", "write_charts"]

CHARTS: tuple[tuple[str, Callable[[Sequence[Result]], Optional[Figure]]], ...] = (
    ("memory_vs_params", memory_vs_params),
    ("throughput", throughput),
    ("images_per_joule", images_per_joule),
    ("max_batch", max_batch),
    ("paper_vs_measured", paper_vs_measured),
)


def write_charts(results: Sequence[Result], out_dir: str | Path,
                 accuracies: Optional[Sequence[Accuracy]] = None) -> list[Path]:
    """Write every chart with something to plot as NAME.png and NAME.svg; return the paths written.

    `accuracies` are the top-1 accuracies to plot against cost (default: the paper's); an accuracy
    chart is written for each dataset with an accuracy meeting a result. Each file is replaced
    atomically: if saving fails, the previous file of that name is left as it was.
    """
    results = list(results)
    out = Path(out_dir)
    figures = [(name, make(results)) for name, make in CHARTS]
    figures += accuracy_charts(results, chart_accuracies() if accuracies is None else accuracies)
    return save_figures([(name, fig) for name, fig in figures if fig is not None], out)
