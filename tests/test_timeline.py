"""The memory timeline of one training step: hand-derived bytes, the CPU estimator's peak, the chart."""
import json
import pickle

import pytest
import torch
import torch.nn as nn
from matplotlib import image as plt_image
from test_scale import text_overlaps

from wavemix_profile.cli import main
from wavemix_profile.measure.memory import CpuEstimator
from wavemix_profile.measure.memory_timeline import cpu_timeline, cuda_timeline
from wavemix_profile.models import create_model
from wavemix_profile.render.chart_style import ASPECT_RANGE, DPI, MAX_INCHES
from wavemix_profile.render.timeline import timeline_chart, timeline_table
from wavemix_profile.estimate.timeline import CATEGORIES, PHASES, timeline_from_json, timeline_to_json
from wavemix_profile.sources.training import StepConfig

BATCH, SIZE, HIDDEN, CLASSES = 4, 8, 32, 10
IN = 3 * SIZE * SIZE


def two_linear(**_):
    return nn.Sequential(nn.Flatten(), nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


def column(timeline, name):
    return timeline.bytes_by_category[CATEGORIES.index(name)]


@pytest.fixture(scope="module")
def tiny():
    config = StepConfig(device=torch.device("cpu"), amp="off", num_classes=CLASSES)
    return cpu_timeline(two_linear, config, batch=BATCH, image_size=SIZE, model_name="two Linear", device_name="cpu")


def test_fixed_bytes_are_hand_derived(tiny):
    params = 4 * (IN * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES)   # fp32 weights and biases
    adam = 2 * params                                                  # exp_avg, exp_avg_sq (step counts: the host's)
    batch = 4 * BATCH * IN + 8 * BATCH                                 # fp32 images, int64 labels
    assert set(column(tiny, "parameters")) == {params}
    assert set(column(tiny, "optimizer state")) == {adam}
    assert set(column(tiny, "batch")) == {batch}
    assert max(column(tiny, "gradients")) == params                    # every .grad alive after backward
    assert column(tiny, "gradients")[-1] == 0                          # zero_grad(set_to_none) frees them
    # The peak is in the optimizer step: foreach Adam's weight decay adds a copy of every gradient,
    # while the logits (fp32) and the loss (one fp32) are still held by the step.
    assert tiny.peak_bytes == params + adam + batch + params + params + 4 * BATCH * CLASSES + 4
    assert tiny.op_index[tiny.peak_sample] >= tiny.phases[-1].first_op
    assert tiny.peak_bytes_by_category[CATEGORIES.index("temporaries")] == params


def test_peak_equals_the_cpu_estimate(tiny):
    config = StepConfig(device=torch.device("cpu"), amp="off", num_classes=CLASSES)
    assert tiny.peak_bytes == CpuEstimator(two_linear, config).peak("train", batch=BATCH, image_size=SIZE)
    assert max(tiny.total_bytes()) == tiny.peak_bytes


def test_peak_equals_the_cpu_estimate_on_wavemix_with_amp():
    """Same settings, same step: the timeline's peak is the estimator's, to the byte (tolerance 0)."""
    def build():
        return create_model("WaveMix-128/7", num_classes=100, image_size=32)
    config = StepConfig(device=torch.device("cpu"), amp="fp16", num_classes=100)
    timeline = cpu_timeline(build, config, batch=8, image_size=32, model_name="WaveMix-128/7", device_name="cpu")
    assert timeline.peak_bytes == CpuEstimator(build, config).peak("train", batch=8, image_size=32)
    assert [s.phase for s in timeline.phases] == list(PHASES)
    # WaveMix peaks as backward begins: the forward's activations are all still held
    peak_op = timeline.op_index[timeline.peak_sample]
    assert timeline.phases[1].first_op <= peak_op <= timeline.phases[1].last_op
    blocks = [m for m in timeline.top_modules if m.module.startswith("blocks.")]
    assert len(blocks) == 7 and all(m.bytes_by_category[CATEGORIES.index("activations")] > 0 for m in blocks)
    assert sum(m.bytes_at_peak for m in timeline.top_modules) <= timeline.peak_bytes


def test_phases_cover_the_step_in_order(tiny):
    spans = tiny.phases
    assert [s.phase for s in spans] == list(PHASES)
    assert spans[0].first_op == 0
    assert all(a.last_op + 1 == b.first_op for a, b in zip(spans, spans[1:]))
    assert spans[-1].last_op == max(tiny.op_index)
    assert list(tiny.op_index) == sorted(tiny.op_index)


def test_modules_at_the_peak(tiny):
    first = next(m for m in tiny.top_modules if m.module == "1")   # Sequential index of the first Linear
    weights = 4 * (IN * HIDDEN + HIDDEN)
    by = dict(zip(CATEGORIES, first.bytes_by_category))
    assert by["parameters"] == weights and by["gradients"] == weights and by["optimizer state"] == 2 * weights
    assert tiny.top_modules[0].module == "1"


def test_json_round_trip(tiny):
    assert timeline_from_json(timeline_to_json(tiny)) == tiny
    with pytest.raises(ValueError):
        timeline_from_json(json.dumps({"model_name": 3}))


def test_chart_and_table(tiny):
    fig = timeline_chart(tiny)
    assert text_overlaps(fig) == []
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert {"forward", "backward", "optimizer step"} <= set(texts)
    assert any(t.startswith("peak ") for t in texts)
    table = timeline_table(tiny)
    assert table.columns[0]._cells[0] == "1"


def test_profile_timeline_end_to_end(tmp_path, capsys):
    out = tmp_path / "timeline"
    assert main(["profile", "python:factories:linear_probe", "--image-size", "8", "--batch-size", "4", "--amp", "off",
                 "--timeline", str(out)]) == 0
    stem = out / "timeline-linear-probe-8px"
    for suffix in (".png", ".svg", ".json"):
        assert stem.with_suffix(suffix).stat().st_size > 0
    height, width = plt_image.imread(stem.with_suffix(".png")).shape[:2]
    assert ASPECT_RANGE[0] <= width / height <= ASPECT_RANGE[1] and width <= MAX_INCHES * DPI, (width, height)
    timeline = timeline_from_json(stem.with_suffix(".json").read_text())
    # Flatten + bias-free Linear(192 -> 100): weights 4 * 192 * 100 bytes
    assert set(column(timeline, "parameters")) == {4 * 192 * 100}
    assert "modules holding the most at the peak" in capsys.readouterr().out


def test_timeline_folder_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["profile", "python:factories:linear_probe", "--timeline", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0]


@pytest.mark.gpu
def test_cuda_timeline_and_snapshot(tmp_path):
    config = StepConfig(device=torch.device("cuda"), amp="fp16", num_classes=CLASSES)
    timeline, snapshot = cuda_timeline(two_linear, config, batch=64, image_size=SIZE, warmup_steps=2,
                                       model_name="two Linear", device_name=torch.cuda.get_device_name())
    # the tracker counts storages, the allocator 512-byte blocks plus what it makes outside tensors
    # (GradScaler's scalars, cuBLAS workspaces): the allocator's peak is above, and close for this model
    # (two 32 MiB workspaces on an H200: 65 MiB above the tracker there, the first validation)
    from wavemix_profile.estimate.cuda_overheads import overheads_for
    row = overheads_for(torch.cuda.get_device_name(), cuda_version=torch.version.cuda).row
    assert timeline.allocator_peak_bytes >= timeline.peak_bytes
    assert timeline.allocator_peak_bytes - timeline.peak_bytes < row.workspace_bytes("train") + 4 * 2**20
    assert {"segments", "device_traces"} <= set(snapshot)
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(pickle.dumps(snapshot))
    assert pickle.loads(path.read_bytes())["device_traces"]
