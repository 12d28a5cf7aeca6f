"""Images/s with their spread: shown beside every figure, noisy figures marked, ties within the spread
all marked best, in the terminal and the Markdown report alike."""
from __future__ import annotations

from rich.console import Console

from wavemix_profile.render.columns import SPREAD_NOTE, UNSTEADY, UNSTEADY_CV, comparison_grids
from wavemix_profile.render.markdown import render_markdown
from wavemix_profile.render.terminal import print_comparison
from wavemix_profile.core.results import Environment, Result, Settings, ThroughputResult

ENV = Environment(device_name="CPU: test", device_memory_bytes=None, driver_version=None, cuda_version=None,
                  torch_version="2", torchvision_version=None, python_version="3", platform="linux", cpu_threads=2,
                  cudnn_benchmark=None, tf32_matmul=None)


def timed(model: str, train: float, train_cv: float, infer: float = 100.0, infer_cv: float = 0.01) -> Result:
    timing = ThroughputResult(batch_size=2, timer="wall-clock", threads=2, iterations=1, repeats=5,
                              train_images_per_s=train, infer_images_per_s=infer, train_cv=train_cv,
                              infer_cv=infer_cv)
    return Result(settings=Settings(model=model, image_size=32), model_name=model, family="WaveMix",
                  environment=ENV, throughput=timing)


def best_and_text(results: list[Result], key: str) -> dict[str, tuple[bool, str]]:
    grid = comparison_grids(results)[0]
    j = [c.key for c in grid.columns].index(key)
    return {row.model: (row.cells[j].best, row.cells[j].text) for row in grid.rows}


def test_every_figure_within_the_spread_of_the_best_is_marked_best():
    # 100 ±5% reaches down to 95; 92 ±4% reaches up to 95.68: a tie. 80 ±5% reaches 84: behind.
    cells = best_and_text([timed("A", 100.0, 0.05), timed("B", 92.0, 0.04), timed("C", 80.0, 0.05)],
                          "train_images_per_s")
    assert cells == {"A": (True, "100 ±5%"), "B": (True, "92 ±4%"), "C": (False, "80 ±5%")}


def test_without_overlap_only_the_best_is_marked():
    cells = best_and_text([timed("A", 100.0, 0.01), timed("B", 97.0, 0.01)], "train_images_per_s")
    assert cells == {"A": (True, "100 ±1%"), "B": (False, "97 ±1%")}   # 99 > 97.97


def test_a_spread_above_the_threshold_is_marked_unsteady():
    assert UNSTEADY_CV == 0.10
    cells = best_and_text([timed("A", 37.1, 1.25), timed("B", 30.0, 0.10)], "train_images_per_s")
    assert cells["A"][1] == "37.1 ±125%" + UNSTEADY.mark   # the WaveMix-16/5 figure
    assert cells["B"][1] == "30 ±10%"                    # at the threshold: not marked
    assert cells["B"][0]                                   # 37.1 ±125% reaches anything: a tie


def test_every_row_unsteady_puts_the_mark_in_the_header_once():
    grid = comparison_grids([timed("A", 10.0, 0.5), timed("B", 20.0, 0.3)])[0]
    j = [c.key for c in grid.columns].index("train_images_per_s")
    assert grid.headers[j].endswith(UNSTEADY.mark) and grid.short_headers[j].endswith(UNSTEADY.mark)
    assert [row.cells[j].text for row in grid.rows] == ["10 ±50%", "20 ±30%"]


def test_terminal_and_markdown_show_the_spread_and_say_what_it_is():
    results = [timed("A", 100.0, 0.05), timed("B", 37.1, 1.25)]
    console = Console(record=True, width=120)
    print_comparison(results, console=console)
    text = console.export_text()
    assert "100 ±5%" in text and "37.1 ±125%?" in text
    assert "±: the spread of images/s" in " ".join(text.split())
    report = render_markdown(results, command=None)
    assert "| 37.1 ±125%? |" in report and "**100 ±5%**" in report
    assert SPREAD_NOTE in report and UNSTEADY.legend in report
