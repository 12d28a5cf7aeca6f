"""Top-1 accuracies to plot against measured costs: the paper's (models/paper_accuracy.csv) and a
user's own (``--accuracy FILE.csv``). Torch-free; renderers and commands both read it.

A user's file is CSV with a header and the columns ``model``, ``dataset``, ``top1`` (percent, 0-100)
and optionally ``image_size`` (pixels); other columns are ignored. Without ``image_size`` the dataset
must be one the paper trained on, and takes the paper's input size for it (CIFAR: 32 px; Tiny
ImageNet and ImageNet-1k: 64 px). An accuracy meets a stored result by the result's display name
(the ``model`` column) and image size.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import BadInputError
from ..models import paper_accuracies

PAPER_SOURCE = "paper"   # the `source` of the paper's rows starts with this
EXPECTED = "expected CSV columns model, dataset, top1 (percent, 0-100) and optionally image_size (pixels)"


@dataclass(frozen=True)
class Accuracy:
    """One model's top-1 accuracy (percent) on `dataset` trained at `image_size` px; `source` says whose."""

    model: str
    dataset: str
    image_size: int
    top1_percent: float
    source: str


def paper_dataset_sizes() -> dict[str, int]:
    """Dataset name -> the input size (px) the paper trained it at, from the shipped accuracy data."""
    return {a.dataset: a.image_size for a in paper_accuracies()}


def paper_top1() -> list[Accuracy]:
    """The paper's top-1 accuracies (Tables 1 and 4)."""
    return [Accuracy(a.model, a.dataset, a.image_size, a.value, f"{PAPER_SOURCE}, Table {a.table}")
            for a in paper_accuracies() if a.metric == "top1"]


def read_accuracy_file(path: str | Path) -> list[Accuracy]:
    """Parse a user's accuracy CSV; a BadInputError names the file, the line and what is expected."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"no accuracy file at {str(path)!r}; {EXPECTED}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read accuracy file {str(path)!r}: {exc}; {EXPECTED}") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("model", "dataset", "top1") if c not in header]
    if missing:
        raise BadInputError(f"{path}, line 1: no {', '.join(missing)} column in the header; {EXPECTED}")
    column = {name: header.index(name) for name in ("model", "dataset", "top1", "image_size") if name in header}
    sizes = paper_dataset_sizes()
    out = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}, line {line}"
        if len(row) != len(header):
            raise BadInputError(f"{where}: {len(row)} fields, the header has {len(header)}; {EXPECTED}")
        cell = {name: row[i].strip() for name, i in column.items()}
        if not cell["model"] or not cell["dataset"]:
            raise BadInputError(f"{where}: empty model or dataset; {EXPECTED}")
        try:
            top1 = float(cell["top1"])
        except ValueError:
            top1 = float("nan")
        if not 0 <= top1 <= 100:
            raise BadInputError(f"{where}: top1 {cell['top1']!r} is not a percentage from 0 to 100; {EXPECTED}")
        out.append(Accuracy(cell["model"], cell["dataset"], _image_size(cell, sizes, where), top1, path.name))
    if not out:
        raise BadInputError(f"{path}: no rows under the header; {EXPECTED}")
    return out


def _image_size(cell: dict[str, str], sizes: dict[str, int], where: str) -> int:
    text = cell.get("image_size", "")
    if not text:
        if cell["dataset"] not in sizes:
            raise BadInputError(f"{where}: dataset {cell['dataset']!r} is not one of the paper's "
                                f"({', '.join(sizes)}), so it needs an image_size column; {EXPECTED}")
        return sizes[cell["dataset"]]
    if not text.isdigit() or int(text) < 1:
        raise BadInputError(f"{where}: image_size {text!r} is not a whole number of pixels >= 1; {EXPECTED}")
    return int(text)


def chart_accuracies(user: Iterable[Accuracy] = ()) -> list[Accuracy]:
    """The paper's top-1 accuracies, then the user's; a user row replaces the paper's for the same
    model, dataset and image size."""
    user = list(user)
    mine = {(a.model, a.dataset, a.image_size) for a in user}
    return [a for a in paper_top1() if (a.model, a.dataset, a.image_size) not in mine] + user


def unmatched(accuracies: Sequence[Accuracy], results) -> list[Accuracy]:
    """Accuracies with no ok stored result of that model at that image size: they cannot be plotted."""
    have = {(r.model_name, r.settings.image_size) for r in results if r.ok}
    return [a for a in accuracies if (a.model, a.image_size) not in have]
