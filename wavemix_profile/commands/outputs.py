"""Write the comparison files for a set of stored results: CSV, Markdown, charts, terminal tables."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..results import Result


def latest_per_key(results: Sequence[Result]) -> list[Result]:
    """One result per (settings, device): the last stored wins; first-seen order is kept."""
    latest: dict[tuple, Result] = {}
    for r in results:
        latest[(r.settings.key(), r.environment.device_name if r.environment else None)] = r
    return list(latest.values())


def _write(path: Path, text: str) -> None:
    """Replace a generated file atomically, so an interrupted write never leaves half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(results: Sequence[Result], out: Path, *, command: str, console=None) -> list[Path]:
    from ..render.charts import write_charts
    from ..render.csv import render_csv
    from ..render.markdown import render_markdown
    from ..render.terminal import print_comparison

    results = latest_per_key(results)
    out.mkdir(parents=True, exist_ok=True)
    print_comparison(results, console=console)
    charts = write_charts(results, out)
    _write(out / "results.csv", render_csv(results))
    _write(out / "report.md", render_markdown(results, command=command,
                                              charts=[p.name for p in charts if p.suffix == ".png"]))
    return [out / "results.csv", out / "report.md", *charts]
