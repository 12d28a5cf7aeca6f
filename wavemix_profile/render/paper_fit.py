"""The report's "What the paper's numbers match" section, from a stored paper_fit.json. Never imports torch."""
from __future__ import annotations

from typing import Sequence

from ..measure.paper_fit import ProtocolFit
from .markdown import _md, _table
from .columns import format_number
from .paper import MEASURED_UNITS, METRIC_LABELS, TABLE_CAPTIONS, ratio_text


def best_per_table(fits: Sequence[ProtocolFit]) -> dict[int, ProtocolFit]:
    best: dict[int, ProtocolFit] = {}
    for f in fits:
        if f.table not in best or f.score < best[f.table].score:
            best[f.table] = f
    return best


def protocol_values(fits: Sequence[ProtocolFit]) -> dict[tuple[int, str, str, int], tuple[float, str]]:
    """(table, model, metric, image size) -> (our value under the table's best protocol, that protocol's
    name): what the report's comparison with the paper shows beside the default protocol's values."""
    return {(e.table, e.model, e.metric, e.image_size): (e.ours, f.protocol)
            for f in best_per_table(fits).values() for e in f.entries}


def render_paper_fit(fits: Sequence[ProtocolFit], *, command: str) -> list[str]:
    """Per table: every protocol's score, the best one's residuals, and a sentence naming it."""
    if not fits:
        return []
    lines = ["## What the paper's numbers match", "",
             "The paper does not say how it read \"GPU GB\" or ran inference for its max inference batch. Each "
             "protocol below is computed from first principles (the CPU estimate with CUDA's autocast policy, the "
             "caching-allocator model and the CUDA overheads of a 16 GB V100), never from another of the paper's "
             "figures. Score: root mean square of log2(ours / paper); 0 is a perfect fit, 1 typically a factor "
             "of 2.", "", f"Produced by: `{command}`", ""]
    best = best_per_table(fits)
    for table, winner in best.items():
        rows = [[("**" + _md(f.protocol) + "**") if f is winner else _md(f.protocol), f"{f.score:.2f}",
                 f"{f.median_ratio:.2f}", str(len(f.entries))]
                for f in sorted((f for f in fits if f.table == table), key=lambda f: f.score)]
        lines += [f"### {TABLE_CAPTIONS.get(table, f'Table {table}')}", "",
                  *_table(["protocol", "score", "median ours / paper", "values"], "lrrr", rows), "",
                  f"Best: {winner.protocol}, typically within a factor of {2 ** winner.score:.2f} of the paper.", "",
                  *_table(["model", "px", "metric", "paper", "ours", "ours / paper"], "lrlrrr",
                          [[_md(e.model), str(e.image_size), METRIC_LABELS[e.metric], f"{e.paper:,g}",
                            format_number(e.ours, MEASURED_UNITS[e.metric]), ratio_text(e.ours / e.paper)]
                           for e in winner.entries]), ""]
    return lines
