"""Rich terminal tables. Takes plain rows and result objects only; never imports torch."""
from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..core.results import Result
from .columns import MISSING, Grid, best_legend, column_notes, comparison_grids

BEST_STYLE = "bold green"
ERROR_STYLE = "red"


MIN_PIPED_WIDTH = 200  # rich assumes 80 columns when output is piped; GPU tables (MFU, energy) need about 200


def make_console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A console that keeps the comparison tables readable in logs and CI output too; on stderr when
    stdout carries machine output, printing nothing when quiet."""
    console = Console(stderr=stderr, quiet=quiet)
    if not console.is_terminal and console.width < MIN_PIPED_WIDTH:
        console = Console(stderr=stderr, quiet=quiet, width=MIN_PIPED_WIDTH)
    return console


def print_registry(rows: list[dict], *, num_classes: int, console: Console | None = None) -> None:
    """The `list` table: one row per registered model, our parameter count beside Table 1's."""
    table = Table(title=f"wavemix-profile model registry ({num_classes} classes, 32 px)")
    for header, justify in (("model", "left"), ("family", "left"), ("params (M)", "right"),
                            ("paper params (M, T1)", "right"), ("ours / paper", "right"),
                            ("paper GPU GB @ batch 64 (T1)", "right")):
        table.add_column(header, justify=justify)
    for row in rows:
        paper = row["paper"]
        ours_m = row["params"] / 1e6
        p_params = paper.get("params@32px (T1)")
        p_gpu = paper.get("gpu_train_batch64@32px (T1)")
        table.add_row(row["name"], row["family"], f"{ours_m:.3f}",
                      "" if p_params is None else f"{p_params:g}",
                      "" if p_params is None else f"{ours_m / p_params:.2f}",
                      "" if p_gpu is None else f"{p_gpu:g}")
    (console or make_console()).print(table)


def comparison_table(grid: Grid) -> Table:
    """One rich Table for one image size: best values bold green, failed rows red with their errors
    listed under the table, labels explained. Families head their groups of rows rather than taking a
    column, so that the table fits 120 columns."""
    legend = [f"[{BEST_STYLE}]{BEST_STYLE}[/]: {best_legend(grid.columns)}"]
    legend += [f"{label.mark.strip()}: {label.legend}" for label in grid.labels]
    legend += column_notes(grid.columns)
    failed = [row for row in grid.rows if row.error is not None]
    legend += [f"[{ERROR_STYLE}]failed: {row.model}" + (f" on {row.device}" if grid.show_device else "")
               + f": {escape(row.error)}[/]" for row in failed]
    table = Table(title=Text(grid.title), caption="\n".join(legend), caption_justify="left")
    table.add_column("model", no_wrap=True)
    if grid.show_device:
        table.add_column("device")
    for header in grid.short_headers:
        table.add_column(header, justify="right")
    width = len(grid.short_headers) + grid.show_device
    family = None
    for row in grid.rows:
        if row.family != family:
            family = row.family
            table.add_row(Text(family or "other", style="bold dim"), *[""] * width,
                          end_section=False)
        lead = [Text("  " + row.model)] + ([Text(row.device)] if grid.show_device else [])
        if row.error is not None:
            cells = [Text("failed", style=ERROR_STYLE, justify="right")] + [""] * (len(grid.headers) - 1)
            table.add_row(*lead, *cells, style=ERROR_STYLE)
            continue
        table.add_row(*lead, *(Text(c.text, style=BEST_STYLE if c.best else ("dim" if c.text == MISSING else ""))
                               for c in row.cells))
    return table


def print_comparison(results: Sequence[Result], console: Console | None = None) -> None:
    """The comparison: one table per image size, columns as in the Markdown report."""
    console = console or make_console()
    for grid in comparison_grids(list(results)):
        console.print(comparison_table(grid))
