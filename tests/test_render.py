"""Renderers against stored results: golden Markdown and CSV of a real run, and, on an invented fixture
with GPU rows (tests/data/), chart contents, highlighting, MFU and energy.

The golden files are regenerated deliberately, never by the tests (tests/golden/regenerate.py says more):

    python tests/golden/regenerate.py            # re-render tests/golden/report.md and results.csv
    python tests/golden/regenerate.py --measure  # measure tests/golden/results.jsonl anew first
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from wavemix_profile.render.charts import write_charts
from wavemix_profile.render.columns import comparison_grids
from wavemix_profile.render.csv import COLUMNS, render_csv
from wavemix_profile.render.markdown import render_markdown
from wavemix_profile.render.paper import compare_with_paper
from wavemix_profile.render.terminal import (BEST_STYLE, comparison_table, print_comparison,
                                             print_registry)
from wavemix_profile.core.results import result_from_dict

from golden import regenerate as golden  # tests/golden/regenerate.py: the golden files' one source

HERE = Path(__file__).parent
FIXTURE = HERE / "data" / "results_fixture.jsonl"
COMMAND = "wavemix-profile compare --models ResNet-18 ConvMixer-256/16 CCT-128/4x4 'WaveMix-*/7' --image-sizes 32 64"
CHART_FILES = ["memory_vs_params.png", "throughput.png", "images_per_joule.png", "max_batch.png",
               "paper_vs_measured.png"]
GIB = 2**30
H100 = "NVIDIA H100 80GB HBM3"
CPU = "CPU: AMD EPYC 7B13"
REGEN = "if the change is intended, run: python tests/golden/regenerate.py"


def load_fixture():
    return [result_from_dict(json.loads(line)) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


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


# --- golden files of a real run -------------------------------------------------------------------
# tests/golden/results.jsonl is a real CPU run of WaveMix-16/5 and ResNet-18 at 32 px; report.md and
# results.csv are what compare wrote for it. Timings vary run to run, so each golden renders the stored
# records; one value per table is checked against a hand derivation instead of the golden file.

@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    results = golden.load_results()
    return results, golden.render(results, tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("name", golden.FILES)
def test_rendered_output_matches_golden(golden_run, name):
    assert golden_run[1][name] == (golden.HERE / name).read_text(encoding="utf-8"), REGEN


def test_golden_store_is_the_real_run_and_names_no_path_of_the_machine():
    records = [json.loads(line) for line in golden.STORE.read_text(encoding="utf-8").splitlines()]
    assert [r["model_name"] for r in records] == ["WaveMix-16/5", "ResNet-18"]
    assert {r["command"] for r in records} == {"wavemix-profile " + " ".join(golden.RUN)}
    assert all(r["error"] is None and r["memory"]["method"] == "cpu-estimate" for r in records)

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []
    absolute = {word for r in records for s in strings(r) for word in s.split() if re.match(r"/\w", word)}
    assert all(word.startswith(("/sys/", "/proc/")) for word in absolute), absolute  # system interfaces only


# ResNet-18 as the zoo builds it: torchvision's resnet18 (11,689,512 parameters at 1000 classes, its
# published meta) with a 3x3 stem instead of 7x7 and no max-pool (CIFAR), and a 100-class head.
RESNET18_PARAMS = 11_689_512 - (7 * 7 - 3 * 3) * 3 * 64 - 900 * 512 - 900              # 11,220,132
# Its forward MACs per image at 32 px: each 3x3 conv costs H*W*Cout*Cin*9, each 1x1 shortcut H*W*Cout*Cin.
RESNET18_MACS = (32 * 32 * 64 * 3 * 9                                                    # stem
                 + 4 * 32 * 32 * 64 * 64 * 9                                             # layer1
                 + sum(s * s * c * (c // 2) * 9 + 3 * s * s * c * c * 9 + s * s * c * (c // 2)
                       for s, c in ((16, 128), (8, 256), (4, 512)))                      # layer2-4
                 + 512 * 100)                                                            # fc: 555,468,800


def markdown_row(report, heading, model):
    """The cells of `model`'s row in the first table under `heading`, keyed by column header."""
    lines = report.splitlines()
    table = [line for line in lines[lines.index(heading):] if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    row = next(line for line in table if line.startswith(f"| {model} |"))
    return dict(zip(header, (c.strip() for c in row.strip("|").split("|"))))


def test_golden_report_values_checked_by_hand(golden_run):
    results, files = golden_run
    report, rows = files["report.md"], list(csv.DictReader(io.StringIO(files["results.csv"])))
    resnet = next(r for r in results if r.model_name == "ResNet-18")
    assert resnet.params_total == RESNET18_PARAMS and resnet.flops.forward_macs_per_image == RESNET18_MACS
    # environment table: two records, none failed
    assert "| results (failed) | 2 (0) |" in report.splitlines()
    # comparison table: params in millions, two decimals
    grid = markdown_row(report, next(l for l in report.splitlines() if l.startswith("## 32×32 px")), "ResNet-18")
    assert grid["params (M)"] == f"{RESNET18_PARAMS / 1e6:.2f}" == "11.22"
    # Table 1 beside the paper: 11,220,132 against the paper's 11.2 M
    table1 = markdown_row(report, next(l for l in report.splitlines() if l.startswith("### Table 1")), "ResNet-18")
    assert table1["params: paper (M)"] == "11.2" and table1["params: ours/paper"] == f"{RESNET18_PARAMS / 11.2e6:.2f}"
    # Table 5: the paper's 1,571 images/s (V100, 32 px) beside ours, timed on a CPU: no ratio, and said why
    heading = next(l for l in report.splitlines() if l.startswith("### Table 5"))
    table5 = markdown_row(report, heading, "ResNet-18")
    assert table5["train: paper (images/s)"] == "1,571"
    assert table5["train: ours (images/s)"] == f"{resnet.throughput.train_images_per_s:.3g}"  # a CPU rate below 100
    assert not any("ours/paper" in header for header in table5)
    device = resnet.environment.device_name
    after = report.split(heading, 1)[1].split("\n### ", 1)[0]
    assert f"No ours/paper for images/s timed on {device}: the paper timed a V100" in after
    # CSV: one row per record, MACs as integers
    csv_resnet = next(r for r in rows if r["model_name"] == "ResNet-18")
    assert int(csv_resnet["flops.forward_macs_per_image"]) == RESNET18_MACS and len(rows) == 2


def test_csv_has_one_flat_row_per_result_with_empty_missing_cells(results):
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert len(rows) == len(results) and tuple(rows[0]) == COLUMNS
    for row, result in zip(rows, results):
        assert row["model_name"] == result.model_name and int(row["settings.image_size"]) == result.settings.image_size
    skipped = rows[results.index(find(results, "ResNet-18", 64))]
    assert skipped["max_batch_train.max_batch"] == "" and skipped["max_batch_train.predicted"] == ""
    failed = rows[results.index(find(results, "CCT-128/4x4", 64))]
    assert failed["error"].startswith("OutOfMemoryError") and failed["params_total"] == ""
    cpu = rows[results.index(find(results, "WaveMix-128/7", 32, CPU))]
    assert cpu["memory.method"] == "cpu-estimate" and cpu["max_batch_train.predicted"] == "True"
    assert int(cpu["memory.peak_train_bytes"]) == find(results, "WaveMix-128/7", 32, CPU).memory.peak_train_bytes
    assert float(cpu["throughput.train_images_per_s"]) == 38.46 and cpu["throughput.batch_size"] == "8"


# --- paper comparison ---------------------------------------------------------------------------

def test_paper_ratio_hand_checked(results):
    comparisons = compare_with_paper(results)
    params = [c for c in comparisons if (c.table, c.model, c.metric, c.device_name)
              == (1, "WaveMix-128/7", "params", H100)]
    assert len(params) == 1
    # 2,416,580 parameters against Table 1's 2.42 M: 2.416580 / 2.42 = 0.998587
    assert params[0].measured_value == pytest.approx(2.416580)
    assert params[0].ratio == pytest.approx(0.998587, abs=1e-6)
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
    names = [str(cell).strip() for cell in cell_texts(table, "model")]   # family heading rows among them
    params = dict(zip(names, cell_texts(table, "params (M)")))
    styled = [name for name, cell in params.items() if getattr(cell, "style", "") == BEST_STYLE]
    assert styled == ["CCT-128/4x4"] and str(params["CCT-128/4x4"]) == "1.05"
    assert [n for n in names if n not in models] == ["convolutional", "token mixer", "transformer", "WaveMix"]  # families head groups
    report = render_markdown(on_h100, command=None)
    cct = next(line for line in report.splitlines() if line.startswith("| CCT-128/4x4 | transformer |"))
    assert cct.startswith("| CCT-128/4x4 | transformer | **1.05** | 0.313 |")


def test_error_row_is_shown_not_fatal(results):
    grid = comparison_grids(results)[1]
    row = next(r for r in grid.rows if r.model == "CCT-128/4x4")
    assert row.error.startswith("OutOfMemoryError") and row.cells == ()
    console = Console(record=True, width=320)
    print_comparison(results, console=console)
    text = console.export_text()
    # the row says it failed; the error itself is one line under the table, not wrapped in a cell
    assert "failed: CCT-128/4x4 on NVIDIA H100 80GB HBM3: OutOfMemoryError: CUDA out of memory." in text
    assert any(line.split("│")[1].strip() == "CCT-128/4x4" and "failed" in line for line in text.splitlines()
               if "│" in line)
    assert "WaveMix-256/7" in text
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
    # + 379,584,512 B of kernels + 606 MiB of library handles (what the H200's measured 1,394 MiB outside the
    # allocator leaves) = 2.675 GiB on the device.
    assert texts["memory"] == "1.21~ ≤2.68" and texts["max_batch_train"] == "832 (pred.)"
    report = render_markdown(results, command=COMMAND)
    assert "| 1.21\\~ ≤2.68 |" in report
    assert "- `~`: the tensors (allocated), estimated on the CPU" in report
    assert "- `≤`: the predicted band's upper end, what nvidia-smi would show" in report
    assert "- `(pred.)`: predicted from CPU memory estimates, not found by probing a GPU: the largest batch " \
           "whose step runs within the budget on the target GPU (the least device memory the step runs in" in report
    console = Console(record=True, width=320)
    print_comparison(results, console=console)
    text = console.export_text()
    assert "1.21~ ≤2.68" in text and "≤: the predicted band's upper end" in text


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


# Chart contents: tests/test_charts.py


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
    assert float(gpu["throughput.train_mfu"]) == timing.train_mfu
    assert float(gpu["throughput.infer_mfu"]) == timing.infer_mfu
    assert float(gpu["throughput.train_joules_per_image"]) == pytest.approx(412.0 / 2131.1)
    assert (gpu["throughput.train_watts"], gpu["throughput.infer_watts"], gpu["throughput.energy_source"]) == \
        ("412.0", "287.0", "nvml")
    assert int(gpu["memory.nvml_peak_train_bytes"]) == find(results, "WaveMix-128/7", 64).memory.nvml_peak_train_bytes
    cpu = rows[results.index(find(results, "WaveMix-128/7", 32, CPU))]
    assert all(cpu[f"throughput.{name}"] == "" for name in ("train_mfu", "train_joules_per_image", "energy_source"))
    assert cpu["throughput.energy_note"].startswith("no RAPL energy counters")


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


def test_a_cpu_run_with_a_cuda_build_of_torch_says_no_gpu_was_used():
    import dataclasses
    from wavemix_profile.render.markdown import render_markdown
    cpu = next(r for r in load_fixture() if r.environment and r.environment.device_memory_bytes is None)
    built = dataclasses.replace(cpu, environment=dataclasses.replace(cpu.environment, cuda_version="13.0"))
    assert "| CUDA | torch built for 13.0; no GPU used |" in render_markdown([built])
