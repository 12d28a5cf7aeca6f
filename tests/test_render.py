"""Renderers against a fixed set of stored results: golden Markdown and CSV, chart contents, highlighting.

The golden files are regenerated deliberately, never by the tests:

    python tests/test_render.py --regen
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from wavemix_profile.render.charts import (images_per_joule, memory_vs_params, max_batch, paper_vs_measured,
                                           throughput, write_charts)
from wavemix_profile.render.columns import comparison_grids
from wavemix_profile.render.csv import COLUMNS, render_csv
from wavemix_profile.render.markdown import render_markdown
from wavemix_profile.render.paper import compare_with_paper
from wavemix_profile.render.terminal import (BEST_STYLE, comparison_table, print_comparison,
                                             print_registry)
from wavemix_profile.results import result_from_dict

HERE = Path(__file__).parent
FIXTURE = HERE / "data" / "results_fixture.jsonl"
GOLDEN_MD = HERE / "golden" / "report.md"
GOLDEN_CSV = HERE / "golden" / "results.csv"
COMMAND = "wavemix-profile compare --models ResNet-18 ConvMixer-256/16 CCT-128/4x4 'WaveMix-*/7' --image-sizes 32 64"
CHART_FILES = ["memory_vs_params.png", "throughput.png", "images_per_joule.png", "max_batch.png",
               "paper_vs_measured.png"]
GIB = 2**30
H100 = "NVIDIA H100 80GB HBM3"
CPU = "CPU: AMD EPYC 7B13"
REGEN = "if the change is intended, run: python tests/test_render.py --regen"


def load_fixture():
    return [result_from_dict(json.loads(line)) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def rendered() -> dict[Path, str]:
    results = load_fixture()
    return {GOLDEN_MD: render_markdown(results, command=COMMAND, charts=CHART_FILES),
            GOLDEN_CSV: render_csv(results)}


@pytest.fixture(scope="module")
def results():
    return load_fixture()


@pytest.fixture(scope="module")
def on_h100(results):
    return [r for r in results if r.environment and r.environment.device_name == H100]


def find(results, model, size, device=H100):
    return next(r for r in results if (r.model_name, r.settings.image_size) == (model, size)
                and r.environment.device_name == device)


# --- stored data and golden files -------------------------------------------------------------

def test_fixture_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("make_results_fixture", HERE / "data" / "make_results_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Compared as objects, so a field added to the results API with a default does not force a rewrite.
    assert load_fixture() == module.fixture_results(), "run python tests/data/make_results_fixture.py"


@pytest.mark.parametrize("golden", [GOLDEN_MD, GOLDEN_CSV], ids=lambda p: p.name)
def test_rendered_output_matches_golden(golden):
    assert rendered()[golden] == golden.read_text(encoding="utf-8"), REGEN


def test_csv_has_one_flat_row_per_result_with_empty_missing_cells(results):
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert len(rows) == len(results) and tuple(rows[0]) == COLUMNS
    for row, result in zip(rows, results):
        assert row["model"] == result.model_name and int(row["image_size"]) == result.settings.image_size
    skipped = rows[results.index(find(results, "ResNet-18", 64))]
    assert skipped["max_batch_train"] == "" and skipped["max_batch_train_predicted"] == ""
    failed = rows[results.index(find(results, "CCT-128/4x4", 64))]
    assert failed["error"].startswith("OutOfMemoryError") and failed["params_total"] == ""
    cpu = rows[results.index(find(results, "WaveMix-128/7", 32, CPU))]
    assert cpu["memory_method"] == "cpu-estimate" and cpu["max_batch_train_predicted"] == "True"
    assert int(cpu["peak_train_bytes"]) == find(results, "WaveMix-128/7", 32, CPU).memory.peak_train_bytes
    assert float(cpu["train_images_per_s"]) == 38.46 and cpu["throughput_batch_size"] == "8"


# --- paper comparison ---------------------------------------------------------------------------

def test_paper_ratio_hand_checked(results):
    comparisons = compare_with_paper(results)
    params = [c for c in comparisons if (c.table, c.model, c.metric, c.device_name)
              == (1, "WaveMix-128/7", "params", H100)]
    assert len(params) == 1
    # 2,433,764 parameters against Table 1's 2.42 M: 2.433764 / 2.42 = 1.005687
    assert params[0].measured_value == pytest.approx(2.433764)
    assert params[0].ratio == pytest.approx(1.005687, abs=1e-6)
    assert params[0].paper_value == 2.42 and params[0].unit == "M"
    gpu_cpu = next(c for c in comparisons if (c.table, c.model, c.metric, c.device_name)
                   == (1, "WaveMix-128/7", "gpu_train_batch64", CPU))
    assert "CPU estimate" in gpu_cpu.note and gpu_cpu.unit == "GiB"
    assert gpu_cpu.measured_value == pytest.approx(1.21, abs=1e-6)
    predicted = next(c for c in comparisons if (c.table, c.model, c.metric, c.device_name)
                     == (6, "WaveMix-128/7", "max_batch_train", CPU))
    assert "predicted" in predicted.note and predicted.ratio == pytest.approx(832 / 768)
    timed = next(c for c in comparisons if (c.table, c.model, c.metric, c.image_size)
                 == (5, "ResNet-18", "infer_images_per_s", 64))
    assert H100 in timed.note and "V100" in timed.note


def test_paper_comparison_skips_other_conditions(results):
    base = find(results, "WaveMix-256/7", 32)
    other_budget = dataclasses.replace(base, max_batch_train=dataclasses.replace(base.max_batch_train,
                                                                                 budget_bytes=24 * GIB))
    other_batch = dataclasses.replace(base, memory=dataclasses.replace(base.memory, batch_size=128))
    metrics = {c.metric for c in compare_with_paper([other_budget])}
    assert "max_batch_train" not in metrics and "max_batch_infer" in metrics
    assert "gpu_train_batch64" not in {c.metric for c in compare_with_paper([other_batch])}
    assert compare_with_paper([find(results, "CCT-128/4x4", 64)]) == []  # an error gives nothing


# --- tables -------------------------------------------------------------------------------------

def cell_texts(table, header):
    column = next(c for c in table.columns if c.header == header)
    return list(column.cells)


def test_best_value_highlighting_picks_the_right_cell(on_h100):
    grid = comparison_grids(on_h100)[0]
    assert grid.image_size == 32
    models = [row.model for row in grid.rows]
    best = {col.key: [models[i] for i, row in enumerate(grid.rows) if row.cells[j].best]
            for j, col in enumerate(grid.columns)}
    assert best == {"params": ["CCT-128/4x4"], "macs": ["WaveMix-128/7"], "memory": ["ResNet-18"],
                    "max_batch_train": ["ResNet-18"], "max_batch_infer": ["ResNet-18"],
                    "train_images_per_s": ["ResNet-18"], "infer_images_per_s": ["ResNet-18"],
                    "train_mfu": ["ResNet-18"], "infer_mfu": ["ResNet-18"],
                    "train_images_per_joule": ["ResNet-18"], "infer_images_per_joule": ["ResNet-18"]}
    table = comparison_table(grid)
    params = cell_texts(table, "params (M)")
    styled = [models[i] for i, cell in enumerate(params) if cell.style == BEST_STYLE]
    assert styled == ["CCT-128/4x4"] and str(params[models.index("CCT-128/4x4")]) == "0.91"
    report = render_markdown(on_h100, command=None)
    cct = next(line for line in report.splitlines() if line.startswith("| CCT-128/4x4 | transformer |"))
    assert cct.startswith("| CCT-128/4x4 | transformer | **0.91** | 0.313 |")


def test_error_row_is_shown_not_fatal(results):
    grid = comparison_grids(results)[1]
    row = next(r for r in grid.rows if r.model == "CCT-128/4x4")
    assert row.error.startswith("OutOfMemoryError") and row.cells == ()
    console = Console(record=True, width=320)
    print_comparison(results, console=console)
    text = console.export_text()
    assert "error: OutOfMemoryError: CUDA out of memory." in text and "WaveMix-256/7" in text
    line = next(l for l in render_markdown(results, command=None).splitlines()
                if l.startswith("| CCT-128/4x4") and "error" in l)
    assert line.count("|") == 1 + 3 + 11 and "error: OutOfMemoryError" in line  # every cell of the row kept


def test_device_column_only_for_several_devices(results, on_h100):
    for subset, expected in ((on_h100, False), (results, True)):
        assert all(g.show_device == expected for g in comparison_grids(subset))
        headers = [c.header for c in comparison_table(comparison_grids(subset)[0]).columns]
        assert ("device" in headers) == expected
        tables = [l for l in render_markdown(subset, command=None).splitlines() if l.startswith("| model |")]
        assert tables and all(("| device |" in l) == expected for l in tables)


def test_estimates_and_predictions_say_which_end_of_the_band_each_is(results):
    grid = comparison_grids(results)[0]
    cpu = next(r for r in grid.rows if r.device == CPU)
    texts = {col.key: cell.text for col, cell in zip(grid.columns, cpu.cells)}
    # Volta, CUDA 12, lazy: 1.32 GiB reserved + 20 MiB of cuBLAS workspaces + 400 MiB context
    # + 379,584,512 B of kernels + 256 MiB of library handles = 2.334 GiB on the device.
    assert texts["memory"] == "1.21~ ≤2.33" and texts["max_batch_train"] == "832 (pred.)"
    report = render_markdown(results, command=COMMAND)
    assert "| 1.21\\~ ≤2.33 |" in report
    assert "- `~`: the tensors (allocated), estimated on the CPU" in report
    assert "- `≤`: the predicted band's upper end, what nvidia-smi would show" in report
    assert "- `(pred.)`: predicted from CPU memory estimates, not found by probing a GPU: the largest batch " \
           "whose upper end (≤) fits the budget" in report
    console = Console(record=True, width=320)
    print_comparison(results, console=console)
    text = console.export_text()
    assert "1.21~ ≤2.33" in text and "≤: the predicted band's upper end" in text


def test_terminal_title_names_device_and_batch(on_h100):
    console = Console(record=True, width=250)
    print_comparison(on_h100, console=console)
    text = console.export_text()
    assert f"32×32 px · {H100} · batch 64" in text and f"64×64 px · {H100} · batch 64" in text


def test_print_registry_still_works():
    console = Console(record=True, width=200)
    print_registry([{"name": "WaveMix-128/7", "family": "WaveMix", "params": 2_433_764,
                     "paper": {"params@32px (T1)": 2.42, "gpu_train_batch64@32px (T1)": 1.3}}],
                   num_classes=100, console=console)
    text = console.export_text()
    assert "2.434" in text and "1.01" in text


def test_empty_input_renders_without_crashing(tmp_path):
    assert "No results." in render_markdown([], command=None)
    assert render_csv([]).count("\n") == 1 and write_charts([], tmp_path) == []
    print_comparison([], console=Console(record=True))


# --- charts ---------------------------------------------------------------------------------------

def test_every_chart_is_written_as_png_and_svg(results, tmp_path):
    paths = write_charts(results, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{stem[:-4]}.{ext}" for stem in CHART_FILES
                                                   for ext in ("png", "svg"))
    for path in paths:
        assert path.is_file() and path.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:2000]


def test_charts_with_nothing_to_plot_are_skipped(results, tmp_path):
    failed = [find(results, "CCT-128/4x4", 64)]
    assert write_charts(failed, tmp_path) == [] and list(tmp_path.iterdir()) == []
    untimed = [dataclasses.replace(r, throughput=None) for r in results]
    names = {p.stem for p in write_charts(untimed, tmp_path / "untimed")}
    assert names == {"memory_vs_params", "max_batch", "paper_vs_measured"}
    cpu_only = [r for r in results if r.environment and r.environment.device_name == CPU]
    names = {p.stem for p in write_charts(cpu_only, tmp_path / "cpu")}
    assert "throughput" in names and "images_per_joule" not in names  # no energy read: no chart


def test_memory_scatter_plots_the_results(results):
    fig = memory_vs_params(results)
    assert [ax.get_title() for ax in fig.axes] == ["32×32 px", "64×64 px"]
    for ax, size in zip(fig.axes, (32, 64)):
        here = [r for r in results if r.ok and r.settings.image_size == size]
        expected = sorted((r.params_total / 1e6, r.memory.peak_train_bytes / GIB) for r in here)
        offsets = sorted((float(x), float(y)) for coll in ax.collections for x, y in coll.get_offsets())
        assert [v for p in offsets for v in p] == pytest.approx([v for p in expected for v in p])
        labels = {t.get_text(): tuple(t.xy) for t in ax.texts}
        for r in here:  # WaveMix-128/7 was measured on two devices: its labels name the device
            key = f"{r.model_name} [{r.environment.device_name}]" if r.model_name == "WaveMix-128/7" else r.model_name
            assert labels[key] == pytest.approx((r.params_total / 1e6, r.memory.peak_train_bytes / GIB))
        assert len(labels) == len(here)
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["convolutional", "token mixer", "transformer", "WaveMix", "WaveMix (CPU estimate)"]
    series = {c.get_label(): c for c in fig.axes[0].collections}
    assert len(series["WaveMix (CPU estimate)"].get_facecolor()) == 0  # hollow: an estimate
    assert len(series["WaveMix"].get_facecolor()) == 1
    assert (series["WaveMix"].get_edgecolor() == series["WaveMix (CPU estimate)"].get_edgecolor()).all()
    assert len({tuple(c.get_edgecolor()[0]) for c in series.values()}) == 4  # one colour per family


def bars(ax):
    """{(series label, bar gid): height} for every bar of an axes."""
    return {(c.get_label(), p.get_gid()): p.get_height() for c in ax.containers for p in c.patches}


def test_throughput_bars_plot_the_results(on_h100):
    fig = throughput(on_h100)
    train, infer = fig.axes
    for ax, field in ((train, "train_images_per_s"), (infer, "infer_images_per_s")):
        expected = {(f"{r.settings.image_size}×{r.settings.image_size} px", r.model_name):
                    getattr(r.throughput, field) for r in on_h100 if r.ok}
        assert bars(ax) == expected


def test_max_batch_bars_plot_the_results(results):
    fig = max_batch(results)
    assert "16.0 GiB budget" in fig.get_suptitle() and "predicted" in fig.get_suptitle()
    ax32 = fig.axes[0]
    got = bars(ax32)
    assert got[("train", f"WaveMix-128/7 [{CPU}]")] == 832 and got[("inference", "CCT-128/4x4")] == 352
    hatched = {p.get_gid() for c in ax32.containers for p in c.patches if p.get_hatch()}
    assert hatched == {f"WaveMix-128/7 [{CPU}]"}
    assert ("train", "ResNet-18") not in bars(fig.axes[1])  # skipped at 64 px: no bar, no crash


def test_paper_vs_measured_bars_are_the_ratios(results):
    fig = paper_vs_measured(results)
    ax = fig.axes[0]
    heights = {p.get_gid(): p.get_height() for p in ax.patches}
    comparisons = compare_with_paper(results)
    assert len(heights) == len(comparisons)
    several = {"WaveMix-128/7"}
    for c in comparisons:
        key = c.model + (f" [{c.device_name}]" if c.model in several else "")
        assert heights[f"{key}|{c.metric}|{c.image_size}|{c.table}"] == pytest.approx(c.ratio)
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())


# --- MFU and energy -----------------------------------------------------------------------------

def test_mfu_and_images_per_joule_cells_for_gpu_rows_dashes_for_the_cpu(results):
    grid = comparison_grids(results)[0]
    texts = {(row.model, row.device): {c.key: cell.text for c, cell in zip(grid.columns, row.cells)}
             for row in grid.rows}
    gpu = texts[("ResNet-18", H100)]
    stored = find(results, "ResNet-18", 32).throughput
    # train MFU 9850 img/s x 3.3396 GFLOP / 989.5 TFLOP/s = 3.32%; 412 W at 9850 img/s = 23.9 images/J
    assert stored.train_mfu == pytest.approx(0.033244, abs=1e-6)
    assert (gpu["train_mfu"], gpu["infer_mfu"]) == ("3.3", "3.5")
    assert (gpu["train_images_per_joule"], gpu["infer_images_per_joule"]) == ("23.9", "109")
    cpu = texts[("WaveMix-128/7", CPU)]
    assert [cpu[k] for k in ("train_mfu", "infer_mfu", "train_images_per_joule", "infer_images_per_joule")] == ["–"] * 4
    console = Console(record=True, width=300)
    console.print(comparison_table(grid))
    text = console.export_text()
    assert "train MFU (%)" in text and "infer (img/J)" in text and "MFU: model FLOPs utilisation" in text


def test_gpu_only_columns_are_left_out_where_no_row_has_them(results):
    cpu_only = [r for r in results if r.environment and r.environment.device_name == CPU]
    keys = [c.key for c in comparison_grids(cpu_only)[0].columns]
    assert keys == ["params", "macs", "memory", "max_batch_train", "max_batch_infer", "train_images_per_s",
                    "infer_images_per_s"]
    report = render_markdown(cpu_only, command=None)
    assert "MFU" not in report and "images/J" not in report
    # the report still says why there is no energy figure
    assert "| energy counter | none: no RAPL energy counters: /sys/class/powercap does not exist" in report


def test_report_names_the_energy_counter_per_device(results):
    row = next(l for l in render_markdown(results, command=None).splitlines() if l.startswith("| energy counter |"))
    assert row.split(" | ")[1] == "NVML total energy (whole GPU board)" and "none: no RAPL" in row.split(" | ")[2]


def test_csv_carries_mfu_and_energy_with_units_in_the_names(results):
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    gpu = rows[results.index(find(results, "WaveMix-128/7", 64))]
    timing = find(results, "WaveMix-128/7", 64).throughput
    assert float(gpu["train_mfu"]) == timing.train_mfu and float(gpu["infer_mfu"]) == timing.infer_mfu
    assert float(gpu["train_joules_per_image"]) == pytest.approx(412.0 / 2131.1)
    assert float(gpu["train_images_per_joule"]) == pytest.approx(2131.1 / 412.0)
    assert (gpu["train_watts"], gpu["infer_watts"], gpu["energy_source"]) == ("412.0", "287.0", "nvml")
    assert int(gpu["nvml_peak_train_bytes"]) == find(results, "WaveMix-128/7", 64).memory.nvml_peak_train_bytes
    cpu = rows[results.index(find(results, "WaveMix-128/7", 32, CPU))]
    assert cpu["train_mfu"] == cpu["train_images_per_joule"] == cpu["energy_source"] == ""
    assert cpu["energy_note"].startswith("no RAPL energy counters")


def test_throughput_chart_writes_mfu_over_gpu_bars_only(results):
    fig = throughput(results)
    train = fig.axes[0]
    notes = {t.get_gid(): t.get_text() for t in train.texts}
    assert notes["32×32 px|ResNet-18"] == "3.3%" and notes["64×64 px|WaveMix-256/7"] == "2.1%"
    assert not any(CPU in gid for gid in notes)  # the CPU row has a bar but no MFU
    assert ("32×32 px", f"WaveMix-128/7 [{CPU}]") in bars(train)
    assert "MFU" in fig.get_suptitle()


def test_images_per_joule_bars_are_the_inverse_of_joules_per_image(results):
    fig = images_per_joule(results)
    train, infer = fig.axes
    for ax, mode in ((train, "train"), (infer, "infer")):
        expected = {(f"{r.settings.image_size}×{r.settings.image_size} px", r.model_name):
                    1 / getattr(r.throughput, f"{mode}_joules_per_image")
                    for r in results if r.ok and r.environment.device_name == H100}
        assert bars(ax) == pytest.approx(expected)
    assert "NVML" in fig.get_suptitle()
    assert images_per_joule([r for r in results if r.environment and r.environment.device_name == CPU]) is None


def test_records_written_before_mfu_and_energy_still_read_and_render():
    line = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[0])
    for key in ("train_mfu", "infer_mfu", "train_joules_per_image", "infer_joules_per_image", "train_watts",
                "infer_watts", "energy_source", "energy_note"):
        del line["throughput"][key]
    del line["memory"]["nvml_peak_train_bytes"], line["memory"]["nvml_peak_infer_bytes"]
    old = result_from_dict(line)
    assert old.throughput.train_images_per_joule is None and old.memory.nvml_peak_train_bytes is None
    assert [c.key for c in comparison_grids([old])[0].columns][-1] == "infer_images_per_s"
    assert render_csv([old]).splitlines()[1].count(",") == len(COLUMNS) - 1


def test_records_written_before_the_band_still_read_and_render():
    line = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[-1])
    assert line["settings"]["target_gpu"] == "V100"
    del line["settings"]["target_gpu"]
    for key in ("reserved_infer_bytes", "predicted_device_train_bytes", "predicted_device_infer_bytes",
                "overhead_source"):
        del line["memory"][key]
    for which in ("max_batch_train", "max_batch_infer"):
        del line[which]["predicted_device_bytes"], line[which]["overhead_source"]
    old = result_from_dict(line)
    assert old.memory.predicted_device_train_bytes is None and old.max_batch_train.overhead_source is None
    grid = comparison_grids([old])[0]
    assert grid.rows[0].cells[[c.key for c in grid.columns].index("memory")].text == "1.21~"
    report = render_markdown([old], command=None)
    assert "| 1.21\\~ |" in report and "- `≤`" not in report
    assert render_csv([old]).splitlines()[1].count(",") == len(COLUMNS) - 1


# --- torch-free -----------------------------------------------------------------------------------

def test_renderers_never_import_torch():
    code = ("import sys\n"
            "import wavemix_profile.render.paper, wavemix_profile.render.columns, wavemix_profile.render.terminal\n"
            "import wavemix_profile.render.markdown, wavemix_profile.render.csv, wavemix_profile.render.charts\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python tests/test_render.py --regen   (rewrites tests/golden/ from the fixture)")
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


def test_a_cpu_run_with_a_cuda_build_of_torch_says_no_gpu_was_used():
    import dataclasses
    from wavemix_profile.render.markdown import render_markdown
    cpu = next(r for r in load_fixture() if r.environment and r.environment.device_memory_bytes is None)
    built = dataclasses.replace(cpu, environment=dataclasses.replace(cpu.environment, cuda_version="13.0"))
    assert "| CUDA | torch built for 13.0; no GPU used |" in render_markdown([built])
