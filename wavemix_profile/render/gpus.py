"""`wavemix-profile gpus`: the card table (gpus.py) as a terminal table or Markdown. Never imports torch."""
from __future__ import annotations

from typing import Sequence

from rich.table import Table

from ..core.gpus import Card
from .columns import MISSING

HEADERS = ("name", "device name (torch)", "compute capability", "memory (GiB)", "memory (bytes)", "basis",
           "source")


def card_rows(cards: Sequence[Card]) -> list[tuple[str, ...]]:
    """One row of text per card, in HEADERS order."""
    return [(c.name, c.device_name, f"{c.sm // 10}.{c.sm % 10}",
             MISSING if c.memory is None else f"{c.memory.bytes / 2**30:.2f}",
             MISSING if c.memory is None else f"{c.memory.bytes:,}",
             MISSING if c.memory is None else c.memory.basis,
             "not known here: give --memory-budget" if c.memory is None else c.memory.source)
            for c in cards]


def gpu_table(cards: Sequence[Card]) -> Table:
    table = Table(title="GPUs a prediction can be for (--target-gpu NAME): total_memory is the max-batch budget")
    for header in HEADERS:
        table.add_column(header, justify="right" if header.startswith("memory") else "left",
                         overflow="fold", max_width=60 if header == "source" else None)
    for row in card_rows(cards):
        table.add_row(*row)
    return table


def gpu_markdown(cards: Sequence[Card]) -> str:
    aligns = ["---:" if h.startswith("memory") else ":---" for h in HEADERS]
    lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in card_rows(cards)]
    return "\n".join(lines) + "\n"
