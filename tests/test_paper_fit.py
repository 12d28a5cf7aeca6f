"""The paper-protocol fit: its arithmetic on hand-made memory lines, its choice, and its report section."""
import json
import math
from pathlib import Path

import pytest

from wavemix_profile.commands.outputs import write_outputs
from wavemix_profile.models import PaperValue
from wavemix_profile.measure.paper_fit import BATCHES, fit, from_json, to_json
from wavemix_profile.render.paper_fit import best_per_table, render_paper_fit
from wavemix_profile.store.store import Store

GIB = 2**30


V100 = 16160 / 1024   # GiB: the V100-SXM2-16GB's total_memory in the GPU table, the paper's card


def line(fixed_gib, per_image_gib, reading_extra_gib=0.0):
    """Readings of one mode on an affine memory line; reserved, device and needed add a fixed amount each."""
    def at(b):
        allocated = (fixed_gib + per_image_gib * b) * GIB
        return {"allocated": allocated, "reserved": allocated + reading_extra_gib * GIB,
                "device": allocated + 2 * reading_extra_gib * GIB, "needed": allocated + 2 * reading_extra_gib * GIB}
    return {b: at(b) for b in BATCHES}


def figures(model, size, precision, inference, num_classes):
    """fp16 halves the per-image cost; recording autograd in inference doubles it."""
    per_image = 0.1 if precision == "fp16" else 0.2
    return {"train": line(1.0, per_image, 0.5),
            "infer": line(0.5, per_image / 4 * (2 if inference == "autograd" else 1), 0.5)}


VALUES = [
    PaperValue(1, "ResNet-18", "gpu_train_batch64", 32, 7.9, "GB", ""),       # fp16 allocated: 1 + 6.4 = 7.4
    PaperValue(6, "ResNet-18", "max_batch_train", 32, 137.0, "images", ""),   # fp16: floor((V100 - 2) / 0.1) = 137
    PaperValue(6, "ResNet-18", "max_batch_infer", 32, 285.0, "images", ""),   # fp16, autograd: (V100 - 1.5) / 0.05
]


def test_each_protocol_is_computed_from_the_lines_and_the_closest_one_wins():
    fits = fit(VALUES, figures=figures)
    by = {(f.table, f.protocol): f for f in fits}
    assert set(by) == {(1, f"{p}, {r}") for p in ("fp16", "fp32 (AMP off)") for r in ("allocated", "reserved", "device")} | {
        (6, f"{p}, {i}") for p in ("fp16", "fp32 (AMP off)") for i in ("inference_mode", "autograd")}
    assert by[(1, "fp16, allocated")].entries[0].ours == pytest.approx(7.4)
    assert by[(1, "fp16, reserved")].entries[0].ours == pytest.approx(7.9)
    assert by[(1, "fp32 (AMP off), device")].entries[0].ours == pytest.approx(1 + 12.8 + 1)
    six = by[(6, "fp16, autograd")]
    assert [e.ours for e in six.entries] == [137.0, 285.0]
    assert six.score == 0.0 and six.median_ratio == 1.0
    assert by[(6, "fp16, inference_mode")].entries[1].ours == math.floor((V100 - 1.5) / 0.025)
    best = best_per_table(fits)
    assert best[1].protocol == "fp16, reserved" and best[6].protocol == "fp16, autograd"


def test_the_fit_round_trips_and_renders_its_section():
    fits = fit(VALUES, figures=figures)
    data = to_json(fits, command="wavemix-profile paper-fit", torch_version="x")
    assert from_json(json.loads(json.dumps(data))) == fits
    lines = render_paper_fit(fits, command="wavemix-profile paper-fit")
    assert "Best: fp16, autograd, typically within a factor of 1.00 of the paper." in lines


def test_report_md_has_the_fits_section_and_the_best_protocols_value_beside_ours(tmp_path):
    values = [PaperValue(1, "ResNet-18", "gpu_train_batch64", 32, 7.9, "GB", ""),
              PaperValue(6, "WaveMix-128/7", "max_batch_train", 32, 137.0, "images", "")]
    fits = fit(values, figures=figures)
    (tmp_path / "paper_fit.json").write_text(json.dumps(to_json(fits, command="wavemix-profile paper-fit",
                                                                torch_version="x")))
    stored = [r for r in Store(Path(__file__).parent / "data" / "results_fixture.jsonl").read()
              if r.model_name in ("ResNet-18", "WaveMix-128/7")]  # the rows asked about: fewer charts to draw
    write_outputs(stored, tmp_path, command="test")
    report = (tmp_path / "report.md").read_text()
    assert "## What the paper's numbers match" in report
    table_1 = report[report.index("### Table 1"):report.index("### Table 4")]
    assert "Paper's protocol: fp16, reserved, on the V100-SXM2-16GB." in table_1
    # fp16 reserved at batch 64: 1 + 0.1 x 64 + 0.5 = 7.9 GiB, beside the paper's published 1.2
    row = next(line for line in table_1.splitlines() if line.startswith("| ResNet-18 |"))
    assert f"| 7.90 | {7.9 / 1.2:.2f} |" in row and "GPU memory @ batch 64: ours, paper's protocol" in table_1
    table_6 = report[report.index("### Table 6"):]
    assert "Paper's protocol: fp16, on the V100-SXM2-16GB." in table_6   # training only: no reading, no inference
    row = next(line for line in table_6.splitlines() if line.startswith("| WaveMix-128/7 |"))
    assert f"| 137 | {137 / 768:.2f} |" in row   # the paper's 768


def test_table_4_is_estimated_with_imagenets_head_and_the_others_with_cifar_100s():
    asked = []

    def recording(model, size, precision, inference, num_classes):
        asked.append((model, num_classes))
        return figures(model, size, precision, inference, num_classes)

    fit([PaperValue(4, "ResNet-18", "max_batch_train", 64, 384.0, "images", ""),
         PaperValue(1, "ResNet-34", "gpu_train_batch64", 32, 1.4, "GB", "")], figures=recording)
    assert set(asked) == {("ResNet-18", 1000), ("ResNet-34", 100)}
