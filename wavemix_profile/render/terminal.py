"""Rich terminal tables. Takes plain rows and result objects only; never imports torch."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


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
    (console or Console()).print(table)
