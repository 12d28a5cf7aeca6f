"""Charts read back from their artists: the values plotted, the Pareto front, the labels (none may
overlap), the axis scales, the error bars, the family colours; and the accuracy data they plot.

The reference run (reports/cpu-amd-epyc/results.jsonl, all 19 models at 32 and 64 px) is the most
crowded input we have, so it is what the label layout is checked on.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from in_process import run_cli
from matplotlib.colors import to_rgba
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

from wavemix_profile.core.accuracy import Accuracy, chart_accuracies, read_accuracy_file
from wavemix_profile.commands.outputs import latest_per_key
from wavemix_profile.core.errors import BadInputError
from wavemix_profile.models import FAMILIES, get_entry
from wavemix_profile.render.chart_accuracy import accuracy_charts, pareto_front, staircase
from wavemix_profile.render.charts import (CHARTS, FAMILY_COLOURS, images_per_joule, max_batch, memory_vs_params,
                                           paper_vs_measured, throughput, write_charts)
from matplotlib.layout_engine import ConstrainedLayoutEngine
from wavemix_profile.render.chart_style import ASPECT_RANGE, DPI, MAX_INCHES, TICK_GAP_PX, freeze_layout
from wavemix_profile.render.paper import GIB, compare_with_paper
from wavemix_profile.render.scale import scale_chart
from wavemix_profile.core.results import result_from_dict
from wavemix_profile.store.store import Store

# one xdist worker runs this module (make test's --dist loadgroup), so that its module-scoped fixtures,
# the reference's figures and the runs' charts, are made once rather than on each worker
pytestmark = pytest.mark.xdist_group("charts")

ROOT = Path(__file__).parents[1]
REFERENCE = ROOT / "reports" / "cpu-amd-epyc" / "results.jsonl"
FIXTURE = Path(__file__).parent / "data" / "results_fixture.jsonl"


@pytest.fixture(scope="module")
def reference():
    return latest_per_key(Store(REFERENCE).read())


def test_this_module_runs_on_one_xdist_worker(request):
    """make test's --dist loadgroup sends a group to one worker by the suffix it gives each node ID; were
    it lost (pytest 9.2 with xdist 3.8, constraints.txt), the module's fixtures would be made twice."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@charts"), request.node.nodeid


def draw_all(results):
    """Every chart of `results`, drawn as save_figure draws it (its layout frozen, crowded ticks thinned):
    {name: figure}."""
    made = {name: make(results) for name, make in CHARTS}
    made.update(accuracy_charts(results, chart_accuracies()))
    for fig in made.values():
        if fig is not None:
            drawn_as_saved(fig)
    return {name: fig for name, fig in made.items() if fig is not None}


def drawn_as_saved(fig):
    """Laid out as save_figure lays it out before it saves: every text placed, nothing rasterised."""
    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        freeze_layout(fig)  # the layout drawn without rendering, then crowded ticks thinned
    else:
        fig.draw_without_rendering()


@pytest.fixture(scope="module")
def figures(reference):
    """Every chart of the reference run, drawn once."""
    return draw_all(reference)


@pytest.fixture(scope="module")
def mixed():
    """The invented fixture of tests/data/: GPU and CPU rows, MFU, energy, a failed row."""
    return [result_from_dict(json.loads(line)) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


# --- the Pareto front ------------------------------------------------------------------------------

def brute_force_front(points, higher_cost_is_better):
    """On the front iff no other point is at least as good in both and better in one."""
    def better_cost(a, b):
        return a > b if higher_cost_is_better else a < b

    def dominates(q, p):
        at_least = (q[0] == p[0] or better_cost(q[0], p[0])) and q[1] >= p[1]
        return at_least and (better_cost(q[0], p[0]) or q[1] > p[1])

    return [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


@pytest.mark.parametrize("higher_cost_is_better", [False, True])
def test_pareto_front_matches_brute_force_with_ties(higher_cost_is_better):
    rng = random.Random(13)
    for _ in range(600):
        n = rng.randint(0, 12)
        grid = rng.choice([3, 6, 1000])  # small grids force equal costs, equal accuracies, equal points
        points = [(rng.randint(1, grid) / 7, rng.randint(1, grid) / 3) for _ in range(n)]
        assert pareto_front(points, higher_cost_is_better=higher_cost_is_better) == \
            brute_force_front(points, higher_cost_is_better), points


def test_pareto_front_by_hand():
    # (GiB, top-1 %): B costs more than A for more accuracy; C is dominated by B; D equals B
    points = [(1.0, 60.0), (2.0, 70.0), (3.0, 65.0), (2.0, 70.0), (0.5, 40.0)]
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front(points, higher_cost_is_better=True) == [1, 2, 3]  # images/s: more is better
    assert staircase([(0.5, 40.0), (1.0, 60.0), (2.0, 70.0)], higher_cost_is_better=False) == \
        ([0.5, 1.0, 1.0, 2.0, 2.0], [40.0, 40.0, 60.0, 60.0, 70.0])
    assert staircase([(2.0, 70.0), (3.0, 65.0)], higher_cost_is_better=True) == ([2.0, 2.0, 3.0], [70.0, 65.0, 65.0])


# --- accuracy charts ------------------------------------------------------------------------------

def flat(pairs):
    """pytest.approx compares flat sequences: [(x, y), ...] -> [x, y, ...]."""
    return [v for pair in pairs for v in pair]


def offsets(ax, gid_part):
    return sorted((float(x), float(y)) for c in ax.collections if gid_part(c.get_gid() or "")
                  for x, y in c.get_offsets())


COST_OF = {  # panel order of chart_accuracy.COSTS, recomputed from the stored fields
    0: ("memory", lambda r: r.memory.peak_train_bytes / GIB),
    1: ("train_images_per_s", lambda r: r.throughput.train_images_per_s),
    2: ("params", lambda r: r.params_total / 1e6),
    3: ("macs", lambda r: r.flops.forward_macs_per_image / 1e9),
}


@pytest.mark.parametrize("dataset, stem, size", [("CIFAR-10", "accuracy_cifar-10", 32),
                                                 ("CIFAR-100", "accuracy_cifar-100", 32),
                                                 ("Tiny ImageNet", "accuracy_tiny-imagenet", 64),
                                                 ("ImageNet-1k", "accuracy_imagenet-1k", 64)])
def test_accuracy_chart_plots_each_model_its_front_and_labels(figures, reference, dataset, stem, size):
    top1 = {a.model: a.top1_percent for a in chart_accuracies() if a.dataset == dataset}
    here = [r for r in reference if r.settings.image_size == size and r.model_name in top1]
    assert len(here) == {"ImageNet-1k": 5}.get(dataset, 18)  # Table 4 has 5 models, Table 1 has 18
    fig = figures[stem]
    assert dataset in fig.get_suptitle() and fig.legends
    for k, ax in enumerate(fig.axes[:4]):
        key, cost = COST_OF[k]
        expected = sorted((cost(r), top1[r.model_name]) for r in here)
        assert flat(offsets(ax, lambda g: g.endswith(f"|{key}"))) == pytest.approx(flat(expected))
        front = [expected[i] for i in brute_force_front(expected, key == "train_images_per_s")]
        assert flat(offsets(ax, lambda g: g == "pareto-points")) == pytest.approx(flat(sorted(front)))
        labels = sorted((a.get_gid(), *a.xy) for a in ax.texts if isinstance(a, Annotation))
        want = sorted((f"label|{key}|{r.model_name}", cost(r), top1[r.model_name]) for r in here)
        assert [g for g, *_ in labels] == [g for g, *_ in want]
        assert flat(xy for _, *xy in labels) == pytest.approx(flat(xy for _, *xy in want))
        assert ax.get_ylabel() == f"{dataset} top-1 accuracy (%)" and ax.get_xlabel().endswith(")")
        ys = [y for _, y in expected]
        assert (ax.get_yscale() == "log") == (max(ys) / min(ys) > 10)
        xs = [x for x, _ in expected]
        assert (ax.get_xscale() == "log") == (max(xs) / min(xs) > 10)


def test_training_throughput_panel_has_cv_error_bars(figures, reference):
    ax = figures["accuracy_cifar-100"].axes[1]
    r = next(r for r in reference if r.model_name == "WaveMix-32/5" and r.settings.image_size == 32)
    rate, half = r.throughput.train_images_per_s, r.throughput.train_cv * r.throughput.train_images_per_s
    segments = [seg for c in ax.collections if c.get_gid() is None and hasattr(c, "get_segments")
                for seg in c.get_segments()]
    top1 = 45.70  # Table 1, CIFAR-100
    assert any(tuple(seg[0]) == pytest.approx((rate - half, top1))
               and tuple(seg[1]) == pytest.approx((rate + half, top1)) for seg in segments)
    assert half > 0   # a CPU row has a spread: the bar has length


def test_user_accuracies_replace_the_papers_and_add_models(reference):
    mine = [Accuracy("ResNet-18", "CIFAR-10", 32, 95.0, "mine.csv"),
            Accuracy("ResNet-18", "Pets", 32, 80.0, "mine.csv")]
    charts = dict(accuracy_charts(reference, chart_accuracies(mine)))
    ax = charts["accuracy_cifar-10"].axes[2]
    r18 = next(r for r in reference if r.model_name == "ResNet-18" and r.settings.image_size == 32)
    assert (r18.params_total / 1e6, 95.0) in offsets(ax, lambda g: g.startswith("convolutional|"))
    assert "mine.csv" in charts["accuracy_cifar-10"].get_suptitle()
    assert flat(offsets(charts["accuracy_pets"].axes[2], lambda g: "|params" in g)) == \
        pytest.approx([r18.params_total / 1e6, 80.0])


# --- every chart ----------------------------------------------------------------------------------

def drawn_texts(fig):
    """Every text a drawn figure shows: titles, axis labels, tick labels within the view, point labels, legends."""
    texts = [fig._suptitle] + [t for legend in fig.legends for t in (legend.get_title(), *legend.get_texts())]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        texts += [t for legend in [ax.get_legend()] if legend for t in (legend.get_title(), *legend.get_texts())]
        if not ax.axison:  # an unused panel (set_axis_off): its axes' labels and ticks are not drawn
            continue
        texts += [ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if lo <= tick.get_loc() <= hi and tick.label1.get_visible():
                    texts.append(tick.label1)
    return [t for t in texts if t is not None and t.get_visible() and t.get_text().strip()]


def boxes(fig):
    """(text, artist, window box) of every text the figure shows; an annotation's box without its leader line."""
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t, Text.get_window_extent(t, renderer)) for t in drawn_texts(fig)]


def overlapping_pairs(named_boxes):
    """(a, b) of each pair of (name, box) whose boxes overlap, touching included, as Bbox.overlaps says;
    all pairs at once, in the order itertools.combinations gives them."""
    if len(named_boxes) < 2:
        return []
    extents = np.array([box.extents for _, box in named_boxes])
    x0, x1 = np.minimum(extents[:, 0], extents[:, 2]), np.maximum(extents[:, 0], extents[:, 2])
    y0, y1 = np.minimum(extents[:, 1], extents[:, 3]), np.maximum(extents[:, 1], extents[:, 3])
    hit = ((x0[:, None] <= x1[None, :]) & (x0[None, :] <= x1[:, None]) &
           (y0[:, None] <= y1[None, :]) & (y0[None, :] <= y1[:, None]))
    return [(named_boxes[i][0], named_boxes[j][0]) for i, j in zip(*np.nonzero(np.triu(hit, 1)))]


def test_overlapping_pairs_are_the_pairs_bbox_overlaps_finds():
    rng = random.Random(7)
    named = [(str(i), Bbox.from_extents(*(rng.choice((0, 5, 10)) + rng.random() * 20 for _ in range(4))))
             for i in range(60)]  # reversed extents and shared edges included
    expected = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(named, 2) if box_a.overlaps(box_b)]
    assert overlapping_pairs(named) == expected and 0 < len(expected) < 60 * 59 // 2
    assert overlapping_pairs(named[:1]) == []


@pytest.mark.parametrize("which", ["reference", "mixed"])
def test_no_two_texts_overlap_in_any_chart(request, which):
    figures = request.getfixturevalue("figures") if which == "reference" else draw_all(request.getfixturevalue("mixed"))
    assert {"memory_vs_params", "throughput", "max_batch", "paper_vs_measured", "accuracy_cifar-10"} <= set(figures)
    for name, fig in figures.items():
        found = boxes(fig)
        assert sum(isinstance(t, Annotation) for _, t, _ in found) >= (5 if "accuracy" in name else 0)
        assert not (pairs := overlapping_pairs([(text, box) for text, _, box in found])), f"{name}: {pairs[0]}"
        for ax in fig.axes:  # point labels stay inside their panel
            frame = ax.get_window_extent()
            for t in ax.texts:
                if isinstance(t, Annotation) and (t.get_gid() or "").startswith("label|"):
                    box = Text.get_window_extent(t)
                    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_every_chart_has_a_title_axis_units_and_a_legend(figures):
    for name, fig in figures.items():
        assert fig.get_suptitle() and fig.legends, name
        for ax in fig.axes:
            if ax.axison:
                assert ax.get_xlabel(), name
        w, h = fig.get_size_inches()
        assert ASPECT_RANGE[0] <= w / h <= ASPECT_RANGE[1], f"{name} is {w:.1f}x{h:.1f} in"  # no strips


def test_one_colour_per_family_in_every_chart(figures):
    for name, fig in figures.items():
        for ax in fig.axes:
            for c in ax.collections:
                family = (c.get_gid() or "").split("|")[0]
                if family in FAMILIES:
                    assert tuple(c.get_edgecolor()[0]) == pytest.approx(to_rgba(FAMILY_COLOURS[family])), name
        legend = {t.get_text(): h for t, h in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
        assert len(set(FAMILIES) & set(legend)) >= 2, name
        for family in set(FAMILIES) & set(legend):
            assert to_rgba(legend[family].get_color()) == pytest.approx(to_rgba(FAMILY_COLOURS[family])), name


def test_dot_charts_plot_the_values_with_a_log_axis_past_10x(figures, reference):
    cases = (("throughput", lambda r, m: getattr(r.throughput, f"{m}_images_per_s")),
             ("max_batch", lambda r, m: getattr(r, "max_batch_train" if m == "train" else "max_batch_infer").max_batch))
    for name, value in cases:
        fig = figures[name]
        names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        for ax, (size, mode) in zip(fig.axes, [(32, "train"), (32, "infer"), (64, "train"), (64, "infer")]):
            got = {names[round(y)]: x for x, y in offsets(ax, lambda g: f"|{mode}|{size}" in g)}
            expected = {r.model_name: value(r, mode) for r in reference if r.settings.image_size == size}
            assert got == pytest.approx(expected)
            assert (ax.get_xscale() == "log") == (max(expected.values()) / min(expected.values()) > 10), (name, size)
    assert figures["max_batch"].axes[0].get_xscale() == "log"  # 68 to 12,967: log
    assert "16.0 GiB" in figures["max_batch"].get_suptitle()


def test_memory_chart_fills_measured_points_and_says_only_what_is_drawn():
    results = [result_from_dict(json.loads(line)) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    fig = memory_vs_params(results)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "filled: measured (CUDA allocator)" in legend and "hollow: CPU estimate of the tensors' peak" in legend
    ax = fig.axes[0]
    hollow = [c for c in ax.collections if c.get_gid().endswith("|hollow")]
    assert [c.get_gid() for c in hollow] == ["WaveMix|32|hollow"] and len(hollow[0].get_facecolor()) == 0
    assert len(next(c for c in ax.collections if c.get_gid() == "WaveMix|32").get_facecolor()) == 1
    labels = {t.get_text() for t in ax.texts}
    assert "WaveMix-128/7 [CPU: AMD EPYC 7B13]" in labels and "WaveMix-128/7 [NVIDIA H100 80GB HBM3]" in labels
    gpu_only = [r for r in results if r.environment and "H100" in r.environment.device_name]
    assert [t.get_text() for t in memory_vs_params(gpu_only).legends[0].get_texts()][-1].startswith("filled")


def test_paper_ratios_are_grouped_by_quantity(figures, reference):
    fig = figures["paper_vs_measured"]
    comparisons = compare_with_paper(reference)
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titles == ["parameters (T1)", "GPU memory @ batch 64 (T1, T4)", "largest training batch, 16 GB (T4, T6)",
                      "largest inference batch, 16 GB (T6)"]
    metrics = ["params", "gpu_train_batch64", "max_batch_train", "max_batch_infer"]
    for ax, metric in zip(fig.axes, metrics):
        names = [t.get_text() for t in fig.axes[0 if metric in metrics[:3] else 3].get_yticklabels()]
        got = sorted((names[round(y)], x) for x, y in offsets(ax, lambda g: "|" in g))
        want = sorted((c.model, c.ratio) for c in comparisons if c.metric == metric)
        assert [n for n, _ in got] == [n for n, _ in want]
        assert [x for _, x in got] == pytest.approx([x for _, x in want])
        ratios = [c.ratio for c in comparisons if c.metric == metric] + [1.0]
        assert (ax.get_xscale() == "log") == (max(ratios) / min(ratios) > 10)
    # Table 5's images/s, timed on a CPU against the paper's V100: paired, but with no ratio, and said
    timed = [c for c in comparisons if c.metric in ("train_images_per_s", "infer_images_per_s")]
    assert len(timed) == 32 and all(c.ratio is None and "not comparable" in c.note for c in timed)
    assert "images/s timed on CPU: AMD EPYC left out" in fig.get_suptitle().replace("\n", " ")


def test_write_charts_writes_png_and_svg_of_each(reference, tmp_path):
    few = [r for r in reference if r.model_name in ("ResNet-18", "WaveMix-128/7")]
    paths = write_charts(few, tmp_path)
    stems = sorted({p.stem for p in paths})
    assert stems == ["accuracy_cifar-10", "accuracy_cifar-100", "accuracy_imagenet-1k", "accuracy_tiny-imagenet",
                     "max_batch", "memory_vs_params", "paper_vs_measured", "throughput"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in data[:2000]


# --- every chart at 1, 3 and 19 models, from the stored runs ------------------------------------

H200_STORE = ROOT / "reports" / "nvidia-h200" / "results.jsonl"
COUNTS = {1: ("ResNet-18",), 3: ("ResNet-18", "CCT-128/4x4", "WaveMix-128/7")}  # 19: the whole reference run
THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$")


def every_chart(results):
    """{name: drawn figure} of every chart a report writes, and the scale command's chart."""
    made = draw_all(results)
    adapts = {r.model_name: get_entry(r.model_name).sizes.adapts for r in results}
    made["scale"] = scale_chart(results, adapts)
    drawn_as_saved(made["scale"])
    return made


@pytest.fixture(scope="module", params=["cpu-1", "cpu-3", "cpu-19", "h200"])
def run_charts(request, reference, figures):
    """(label, results, figures) at each count of models: subsets of the CPU reference run, and the H200 run."""
    if request.param == "h200":
        results = latest_per_key(Store(H200_STORE).read())
        return request.param, results, every_chart(results)
    count = int(request.param.split("-")[1])
    if count == 19:
        drawn = dict(figures)
        drawn["scale"] = scale_chart(reference, {r.model_name: get_entry(r.model_name).sizes.adapts
                                                 for r in reference})
        drawn_as_saved(drawn["scale"])
        return request.param, reference, drawn
    results = [r for r in reference if r.model_name in COUNTS[count]]
    return request.param, results, every_chart(results)


def test_the_counts_are_what_they_say(run_charts):
    label, results, drawn = run_charts
    models = {r.model_name for r in results if r.ok}
    assert len(models) == {"cpu-1": 1, "cpu-3": 3, "cpu-19": 19, "h200": 2}[label]  # the H200 run: two ok models
    assert {"memory_vs_params", "throughput", "max_batch", "paper_vs_measured", "scale"} <= set(drawn)
    assert ("images_per_joule" in drawn) == (label == "h200")  # energy is read on the GPU only


def test_every_chart_keeps_its_shape_size_and_one_legend(run_charts):
    label, _, drawn = run_charts
    low, high = ASPECT_RANGE
    for name, fig in drawn.items():
        w, h = fig.get_size_inches()
        assert low <= w / h <= high, f"{label} {name}: {w * DPI:.0f}x{h * DPI:.0f} px is a strip"
        assert max(w, h) <= MAX_INCHES, f"{label} {name}: {w * DPI:.0f}x{h * DPI:.0f} px"
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert len(legends) == 1, f"{label} {name}: {len(legends)} legends"
        names = [t.get_text() for t in legends[0].get_texts()]
        assert len(names) == len(set(names)), f"{label} {name}: an entry twice"


def test_every_text_is_apart_and_inside_its_figure(run_charts):
    label, _, drawn = run_charts
    for name, fig in drawn.items():
        found = boxes(fig)
        assert not (pairs := overlapping_pairs([(text, box) for text, _, box in found])), f"{label} {name}: {pairs[0]}"
        for ax in fig.axes:  # tick labels of one axis keep a gap, not merely apart: 0.99250.995 reads as one
            for axis, (start, end) in ((ax.xaxis, ("x0", "x1")), (ax.yaxis, ("y0", "y1"))):
                shown = sorted((box for text, t, box in found if t in axis.get_ticklabels()),
                               key=lambda box: getattr(box, start))
                for a, b in zip(shown, shown[1:]):
                    assert getattr(b, start) - getattr(a, end) >= TICK_GAP_PX, f"{label} {name}: ticks touch"
        frame = fig.bbox
        for text, _, box in found:
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 + 0.5 and frame.y0 <= box.y0 and box.y1 <= frame.y1 + 0.5, \
                f"{label} {name}: {text!r} runs off the figure"


def test_numbers_are_plain_and_counts_have_thousands_separators(run_charts):
    label, _, drawn = run_charts
    ticks = 0
    for name, fig in drawn.items():
        for text, artist, _ in boxes(fig):
            assert "e+" not in text and "e-0" not in text, f"{label} {name}: {text!r}"
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                for tick in axis.get_ticklabels():
                    number = tick.get_text().replace("−", "-")
                    if re.fullmatch(r"-?[\d,]+(\.\d+)?", number):
                        ticks += 1
                        assert THOUSANDS.match(number), f"{label} {name}: tick {number!r}"
    assert ticks > 20
    if label in ("cpu-3", "cpu-19", "h200"):  # a max batch of several thousand is labelled 1,000 or 2,000 ...
        labels = [t.get_text() for ax in drawn["max_batch"].axes for t in ax.get_xticklabels()]
        assert any("," in t for t in labels), labels


def test_no_throughput_ratio_across_devices_is_drawn(run_charts):
    """Neither store was timed on the paper's V100: images/s is paired with Table 5 but has no ratio, the
    chart draws every other ratio and no images/s panel, and its title says what was left out."""
    label, results, drawn = run_charts
    comparisons = compare_with_paper(results)
    timed = [c for c in comparisons if c.metric in ("train_images_per_s", "infer_images_per_s")]
    assert timed and all(c.ratio is None for c in timed)
    fig = drawn["paper_vs_measured"]
    dots = sorted(x for ax in fig.axes for x, _ in offsets(ax, lambda g: "|" in g))
    assert dots == pytest.approx(sorted(c.ratio for c in comparisons if c.ratio is not None))
    assert not any("images/s" in ax.get_title() for ax in fig.axes)
    device = "NVIDIA H200" if label == "h200" else "CPU: AMD EPYC"
    assert f"images/s timed on {device} left out" in fig.get_suptitle().replace("\n", " ")


def test_a_throughput_timed_on_the_papers_gpu_keeps_its_ratio(reference):
    """The same record said to come from the paper's card: now comparable, its ratio drawn."""
    r = next(r for r in reference if r.model_name == "ResNet-18" and r.settings.image_size == 32)
    v100 = dataclasses.replace(r, environment=dataclasses.replace(r.environment, device_name="Tesla V100-SXM2-16GB"))
    timed = {c.metric: c for c in compare_with_paper([v100]) if c.metric.endswith("images_per_s")}
    assert timed["train_images_per_s"].ratio == pytest.approx(r.throughput.train_images_per_s / 1571)
    fig = paper_vs_measured([v100])
    assert any(ax.get_title() == "training images/s (paper: V100) (T5)" for ax in fig.axes)
    assert "left out" not in fig.get_suptitle()


# --- the command line -----------------------------------------------------------------------------

def cli(*args):
    return run_cli(*args)


def test_report_with_accuracy_file_charts_the_users_rows(tmp_path):
    lines = [line for line in REFERENCE.read_text(encoding="utf-8").splitlines()
             if json.loads(line)["model_name"] in ("ResNet-18", "WaveMix-16/5")]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "mine.csv").write_text("model,dataset,top1,image_size\nWaveMix-16/5,Flowers,77.5,64\n"
                                       "ResNet-99,CIFAR-10,90,\n", encoding="utf-8")
    run = cli("report", str(tmp_path / "results.jsonl"), "--accuracy", str(tmp_path / "mine.csv"))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "accuracy_flowers.png").is_file() and (tmp_path / "accuracy_flowers.svg").is_file()
    assert "ResNet-99 at 32 px" in run.stderr  # a row meeting no result is named, not silently dropped
    assert "accuracy_flowers.png" in (tmp_path / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("content, words", [
    ("model,top1\nResNet-18,90\n", "line 1: no dataset column"),
    ("model,dataset,top1\nResNet-18,CIFAR-10,ninety\n", "line 2: top1 'ninety' is not a percentage"),
    ("model,dataset,top1\n\nResNet-18,CIFAR-10,190\n", "line 3: top1 '190'"),
    ("model,dataset,top1\nResNet-18,Pets,90\n", "line 2: dataset 'Pets' is not one of the paper's"),
    ("model,dataset,top1,image_size\nResNet-18,Pets,90,big\n", "line 2: image_size 'big'"),
    ("model,dataset,top1\nResNet-18,CIFAR-10\n", "line 2: 2 fields, the header has 3"),
    ("model,dataset,top1\n,CIFAR-10,90\n", "line 2: empty model or dataset"),
    ("model,dataset,top1\n", "no rows under the header"),
])
def test_malformed_accuracy_file_names_file_line_and_what_is_expected(tmp_path, content, words):
    bad = tmp_path / "acc.csv"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(BadInputError) as caught:
        read_accuracy_file(bad)
    assert str(bad) in str(caught.value) and words in str(caught.value) and "\n" not in str(caught.value)
    assert "expected CSV columns model, dataset, top1" in str(caught.value)


def test_accuracy_file_rows_and_defaults(tmp_path):
    good = tmp_path / "acc.csv"
    good.write_text("Model, dataset ,top1,image_size,notes\nWaveMix-16/5,Tiny ImageNet,30.5,,mine\n"
                    "timm:convnext_atto,Pets,88,224,x\n", encoding="utf-8")
    assert read_accuracy_file(good) == [Accuracy("WaveMix-16/5", "Tiny ImageNet", 64, 30.5, "acc.csv"),
                                        Accuracy("timm:convnext_atto", "Pets", 224, 88.0, "acc.csv")]


def test_a_malformed_accuracy_file_is_one_line_exit_2_and_writes_nothing(tmp_path):
    (tmp_path / "results.jsonl").write_text(REFERENCE.read_text(encoding="utf-8").splitlines()[0] + "\n")
    bad = tmp_path / "acc.csv"
    bad.write_text("model,dataset,top1\nResNet-18,CIFAR-10,ninety\n", encoding="utf-8")
    run = cli("report", str(tmp_path / "results.jsonl"), "--accuracy", str(bad))
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"error: {bad}, line 2: top1 'ninety'")
    written = {p.name for p in tmp_path.iterdir()} - {"acc.csv", "results.jsonl", "results.jsonl.lock"}
    assert written == set()  # no report, no chart


# --- GPU and CPU rows together (the invented fixture of tests/data/) -----------------------------

H100 = "NVIDIA H100 80GB HBM3"
CPU = "CPU: AMD EPYC 7B13"


def dots(fig):
    """{(panel title, row name): x} of every dot of a dot-row chart."""
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    return {(ax.get_title(), names[round(y)]): x for ax in fig.axes for x, y in offsets(ax, lambda g: "|" in g)}


def test_charts_with_nothing_to_plot_are_skipped(mixed, tmp_path):
    failed = [r for r in mixed if not r.ok]
    assert failed and write_charts(failed, tmp_path) == [] and list(tmp_path.iterdir()) == []
    untimed = [dataclasses.replace(r, throughput=None) for r in mixed]
    assert {name for name, make in CHARTS if make(untimed)} == {"memory_vs_params", "max_batch", "paper_vs_measured"}
    cpu_only = [r for r in mixed if r.environment and r.environment.device_name == CPU]
    assert images_per_joule(cpu_only) is None  # no energy read: no chart
    assert throughput(cpu_only) is not None


def test_throughput_dots_with_mfu_beside_gpu_rows_only(mixed):
    fig = throughput(mixed)
    got = dots(fig)
    for r in mixed:
        if r.ok and r.throughput:
            name = r.model_name + (f" [{r.environment.device_name}]" if r.model_name == "WaveMix-128/7" else "")
            size = r.settings.image_size
            assert got[(f"training, {size}×{size} px", name)] == r.throughput.train_images_per_s
            assert got[(f"inference, {size}×{size} px", name)] == r.throughput.infer_images_per_s
    notes = {t.get_gid(): t.get_text() for ax in fig.axes for t in ax.texts}
    assert notes["note|train|32|ResNet-18"] == "MFU 3.3%" and notes["note|train|64|WaveMix-256/7"] == "MFU 2.1%"
    assert not any(CPU in gid for gid in notes)  # the CPU row has a dot but no MFU
    assert "H100" in fig.get_suptitle() and "EPYC" in fig.get_suptitle()


def test_images_per_joule_dots_are_the_inverse_of_joules_per_image(mixed):
    got = dots(images_per_joule(mixed))
    gpu = [r for r in mixed if r.ok and r.environment.device_name == H100]
    for r in gpu:  # only the GPU rows have energy, so no name needs its device
        size = r.settings.image_size
        expected = 1 / r.throughput.train_joules_per_image
        assert got[(f"training, {size}×{size} px", r.model_name)] == pytest.approx(expected)
    assert len(got) == 2 * len(gpu)


def test_max_batch_hollow_where_predicted(mixed):
    fig = max_batch(mixed)
    assert "16.0 GiB budget" in fig.get_suptitle()
    got = dots(fig)
    assert got[("training, 32×32 px", f"WaveMix-128/7 [{CPU}]")] == 832
    assert got[("inference, 32×32 px", "CCT-128/4x4")] == 352
    hollow = [c for ax in fig.axes for c in ax.collections if (c.get_gid() or "").endswith("|hollow")]
    assert {c.get_gid() for c in hollow} == {"WaveMix|train|32|hollow", "WaveMix|infer|32|hollow"}
    assert all(len(c.get_offsets()) == 1 and len(c.get_facecolor()) == 0 for c in hollow)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-2:] == ["filled: found on the GPU", "hollow: predicted from CPU estimates"]
    assert ("training, 64×64 px", "ResNet-18") not in got  # skipped at 64 px: no dot, no crash


def test_paper_vs_measured_names_the_device_of_a_model_compared_on_two(mixed):
    fig = paper_vs_measured(mixed)
    names = {t.get_text() for ax in fig.axes for t in ax.get_yticklabels()}
    assert {f"WaveMix-128/7 [{H100}]", f"WaveMix-128/7 [{CPU}]", "ResNet-18"} <= names
    comparable = [c for c in compare_with_paper(mixed) if c.ratio is not None]  # images/s on an H100: none
    assert sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections) == len(comparable)


def _figure(title: str):
    from wavemix_profile.render.chart_style import new_figure
    fig, axes = new_figure(1, 1)
    axes[0].plot([1, 2, 3], [3, 1, 2])
    fig.suptitle(title)
    return fig


@pytest.mark.parametrize("threads", [False, True])
def test_save_figures_writes_every_figure_in_order_split_or_not(tmp_path, threads):
    """Split between this process and a forked child (no other thread), or all here (another thread
    alive): the same files either way, each a whole PNG and SVG."""
    import threading
    from wavemix_profile.render.chart_style import save_figures
    figures = [(f"chart{i}", _figure(f"title {i}")) for i in range(3)]
    hold = threading.Event()
    other = threading.Thread(target=hold.wait) if threads else None
    if other:
        other.start()
    try:
        paths = save_figures(figures, tmp_path / "out")
    finally:
        hold.set()
    assert [p.name for p in paths] == [f"chart{i}.{fmt}" for i in range(3) for fmt in ("png", "svg")]
    for i in range(3):
        assert (tmp_path / "out" / f"chart{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = (tmp_path / "out" / f"chart{i}.svg").read_text()
        assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
