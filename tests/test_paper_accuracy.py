"""The paper's accuracies shipped as data (models/paper_accuracy.csv) against the paper's own text.

tests/data/paper_tables_1_4.txt is Tables 1 and 4 exactly as the paper's text gives them; each
shipped value must be the number in its model's row and its dataset's column there, and every
accuracy cell there must be shipped. When the whole paper's text sits beside the checkout
(../shared/paper/wavemix-paper.txt), the excerpt is checked to be verbatim from it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from wavemix_profile.core.accuracy import paper_dataset_sizes, paper_top1
from wavemix_profile.models import PAPER_ZOO, paper_accuracies

EXCERPT = Path(__file__).parent / "data" / "paper_tables_1_4.txt"
WHOLE_PAPER = Path(__file__).parents[2] / "shared" / "paper" / "wavemix-paper.txt"
# The paper writes a transformer's heads as "4 × 4"; the registry's display names as "4x4".
COLUMNS = {1: {"CIFAR-10": 3, "CIFAR-100": 4, "Tiny ImageNet": 5}, 4: {"ImageNet-1k": (2, 3)}}


def table_rows(number: int) -> dict[str, list[str]]:
    """{registry display name: tab-separated cells} of one table in the excerpt."""
    lines = EXCERPT.read_text(encoding="utf-8").split(f"Table {number}:", 1)[1].split("\n\n", 1)[1].splitlines()
    rows = {}
    for line in lines:
        if line.startswith("Table "):
            break
        cells = line.split("\t")
        if len(cells) > 2 and cells[1].replace(".", "").isdigit():
            rows[cells[0].replace("/4 × 4", "/4x4")] = cells
    return rows


def test_every_shipped_accuracy_is_the_papers_cell():
    tables = {1: table_rows(1), 4: table_rows(4)}
    for a in paper_accuracies():
        cells = tables[a.table][a.model]
        column = COLUMNS[a.table][a.dataset]
        if a.table == 4:
            column = column[0] if a.metric == "top1" else column[1]
        assert float(cells[column]) == a.value, a
        assert a.unit == "%" and a.metric in ("top1", "top5")


def test_every_accuracy_cell_of_tables_1_and_4_is_shipped():
    shipped = {(a.table, a.model, a.dataset, a.metric) for a in paper_accuracies()}
    t1, t4 = table_rows(1), table_rows(4)
    assert len(t1) == 18 and len(t4) == 5
    want = {(1, m, d, "top1") for m in t1 for d in COLUMNS[1]} | {(4, m, "ImageNet-1k", k) for m in t4
                                                                   for k in ("top1", "top5")}
    assert shipped == want and len(paper_accuracies()) == 18 * 3 + 5 * 2
    assert set(t1) | set(t4) <= set(PAPER_ZOO)  # every model is one the zoo builds under that name


def test_image_sizes_are_the_papers_inputs():
    # CIFAR images are 32 px, Tiny ImageNet's 64 px; Table 4's ImageNet-1k is "downscaled to 64×64"
    assert paper_dataset_sizes() == {"CIFAR-10": 32, "CIFAR-100": 32, "Tiny ImageNet": 64, "ImageNet-1k": 64}
    assert "image size downscaled to 64×64" in EXCERPT.read_text(encoding="utf-8")
    assert len(paper_top1()) == 18 * 3 + 5 and all(a.source.startswith("paper, Table ") for a in paper_top1())


@pytest.mark.skipif(not WHOLE_PAPER.is_file(), reason="the paper's text is not beside this checkout")
def test_the_excerpt_is_verbatim_from_the_paper():
    paper = WHOLE_PAPER.read_text(encoding="utf-8")
    table_1, table_4 = EXCERPT.read_text(encoding="utf-8").split("\nTable 4:")
    assert table_1.strip() in paper and ("Table 4:" + table_4).strip() in paper
