"""`wavemix-profile scale`: the fitted exponent, the zoo's size rules, the command end to end, the chart."""
import json
import math

import pytest
from test_charts import overlapping_pairs
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from wavemix_profile.cli import main
from wavemix_profile.models import get_entry, list_models
from wavemix_profile.render.chart_style import ASPECT_RANGE, MAX_INCHES
from wavemix_profile.render.scale import METRICS, fit_exponent, rule_marks, scale_chart, scale_series, scale_tables
from wavemix_profile.core.results import FlopsResult, MaxBatchResult, MemoryResult, Result, Settings, result_from_dict


def text_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty text labels whose drawn bounding boxes overlap."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    undrawn = set()  # labels of ticks outside the view: matplotlib keeps them, but does not draw them
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low <= tick.get_loc() <= high:
                    undrawn.update((id(tick.label1), id(tick.label2)))
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in undrawn]
    return overlapping_pairs(boxes)


# --- the fit, against slopes computed by hand

def test_exact_power_law_gives_its_exponent():
    sizes = [32, 64, 128, 224, 256]
    assert fit_exponent(sizes, [3.0 * s ** 2 for s in sizes]) == pytest.approx(2.0, abs=1e-12)
    assert fit_exponent(sizes, [7.0 * s ** -1.5 for s in sizes]) == pytest.approx(-1.5, abs=1e-12)
    assert fit_exponent(sizes, [5.0] * 5) == pytest.approx(0.0, abs=1e-12)


def test_two_points_give_the_slope_between_them():
    # ln(40 / 10) / ln(64 / 32) = ln 4 / ln 2 = 2
    assert fit_exponent([32, 64], [10.0, 40.0]) == pytest.approx(2.0)
    # ln(3) / ln(5)
    assert fit_exponent([2, 10], [1.0, 3.0]) == pytest.approx(math.log(3) / math.log(5))


def test_least_squares_slope_of_points_off_a_line():
    # log sizes 0, 1, 2 and log values 0, 1, 3: mean x 1, mean y 4/3;
    # slope = ((-1)(-4/3) + 0 + (1)(5/3)) / ((-1)^2 + 0 + 1^2) = 3 / 2
    sizes = [1.0, math.e, math.e ** 2]
    values = [1.0, math.e, math.e ** 3]
    assert fit_exponent(sizes, values) == pytest.approx(1.5)


def test_fit_needs_two_sizes_and_positive_values():
    assert fit_exponent([64], [3.0]) is None
    assert fit_exponent([64, 64], [3.0, 4.0]) is None
    with pytest.raises(ValueError):
        fit_exponent([32, 64], [0.0, 1.0])
    with pytest.raises(ValueError):
        fit_exponent([32, 64], [1.0])


# --- the zoo's size rules: one source, read by the command

@pytest.mark.parametrize("name", list_models())
def test_every_model_says_how_it_changes_with_size(name):
    entry = get_entry(name)
    module = entry.builder.__module__.rsplit(".", 1)[-1]
    adapts = entry.sizes.adapts
    if module in ("vit", "vin", "cct", "cvt", "convmixer"):
        assert "32×32 token grid" in adapts  # patch = size // 32 (models/_attention.token_patch)
    elif module in ("wavemix", "fnet2d", "mlpmixer2d"):
        assert "at most 64×64" in adapts     # the skeleton's stem (models/wavemix.stem_strides)
    else:
        assert module == "resnet" and adapts == ""


def test_token_grid_rule_matches_the_built_model():
    """What the metadata says, checked on the built models: ViT's patch keeps 32x32 tokens;
    WaveMix's stem strides 256 px to 64x64 while ResNet-18 keeps the full map."""
    import torch
    vit = get_entry("ViT-128/4x4").build(image_size=128)
    assert vit.patch == 4 and 128 // vit.patch == 32
    wavemix = get_entry("WaveMix-128/7").build(image_size=256).eval()
    with torch.no_grad():
        assert wavemix.stem(torch.zeros(1, 3, 256, 256)).shape[-1] == 64
    resnet = get_entry("ResNet-18").build(image_size=256)
    assert resnet.conv1.stride == (1, 1) and isinstance(resnet.maxpool, torch.nn.Identity)


# --- end to end on a plain conv net whose MACs are derived by hand

CONVNET = '''
import torch.nn as nn

def plain_convnet(*, num_classes, image_size):
    """3x3 convs at full resolution, a 1x1 classifier conv, global average pool: no linear layer."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


def convnet_macs(size: int, num_classes: int) -> int:
    """Per image: every output pixel of each conv costs c_in * c_out * k * k multiply-adds."""
    return size * size * (3 * 8 * 9 + 8 * 8 * 9 + 8 * num_classes * 1)


def test_scale_command_on_a_plain_conv_net(tmp_path, capsys):
    (tmp_path / "convnet.py").write_text(CONVNET)
    spec = f"python:{tmp_path / 'convnet.py'}:plain_convnet"
    out = tmp_path / "scale"
    args = ["scale", "--models", spec, "--image-sizes", "8", "16", "32", "--num-classes", "10",
            "--memory-budget", "2GiB", "--out", str(out)]
    assert main(args) == 0
    results = [result_from_dict(json.loads(line)) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r.settings.image_size for r in results) == [8, 16, 32]
    assert all(r.ok and r.throughput is None and "throughput" in r.settings.skip for r in results)
    for r in results:
        assert r.flops.forward_macs_per_image == convnet_macs(r.settings.image_size, 10)
    macs = scale_series(results, METRICS[0])
    assert macs[0].exponent == pytest.approx(2.0, abs=1e-9)
    memory = scale_series(results, METRICS[1])[0]
    assert memory.values == tuple(r.memory.peak_train_bytes / 2**30 for r in sorted(
        results, key=lambda r: r.settings.image_size))
    batch = scale_series(results, METRICS[2])[0]
    assert batch.exponent < 0  # larger images, smaller batches
    for name in ("scale.md", "scale.png", "scale.svg"):
        assert (out / name).stat().st_size > 0
    assert "| 2.00 |" in (out / "scale.md").read_text()
    # --resume measures nothing again: the store keeps its three records
    assert main([*args, "--resume"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_sizes_a_model_cannot_take_are_left_out_and_said(tmp_path, capsys):
    # WaveMix-64/5 takes powers of two only: 48 px is refused, and nothing is measured then
    assert main(["scale", "--models", "WaveMix-64/5", "--image-sizes", "48", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WaveMix-64/5 @ 48 px" in err[0]
    assert not (tmp_path / "results.jsonl").exists()


def test_bad_image_size_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["scale", "--image-sizes", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image size" in err[0]


# --- the chart and tables from stored results

def _result(model: str, family: str, size: int, macs: int, peak: int, batch: int) -> Result:
    return Result(settings=Settings(model=model, image_size=size, skip=("throughput",)), model_name=model,
                  family=family, environment=None,
                  flops=FlopsResult(forward_macs_per_image=macs, forward_flops_per_image=2 * macs,
                                    train_step_flops_per_image=6 * macs, uncounted_ops=(),
                                    fvcore_macs_per_image=None, fvcore_unsupported_ops=(), convention="MAC"),
                  memory=MemoryResult(method="cpu-estimate", batch_size=64, peak_train_bytes=peak,
                                      peak_infer_bytes=peak // 4),
                  max_batch_train=MaxBatchResult(mode="train", max_batch=batch, budget_bytes=16 * 2**30,
                                                 predicted=True, method="cpu-estimate", probes=(), search_s=0.1))


SIZES = (32, 64, 128, 224, 256)
MODELS = (("ResNet-18", "convolutional", 2.0), ("ResNet-50", "convolutional", 2.0),
          ("2D FNet-128/5", "token mixer", 0.7), ("ConvMixer-256/8", "token mixer", 0.0),
          ("ViT-128/4x4", "transformer", 0.0), ("CCT-128/4x4", "transformer", 0.05),
          ("WaveMix-128/7", "WaveMix", 0.6), ("WaveMix-256/7", "WaveMix", 0.6))


def synthetic_results() -> list[Result]:
    return [_result(name, family, s, int(1e8 * (s / 32) ** k), int(2**28 * (s / 32) ** k),
                    max(1, int(5000 / (s / 32) ** k))) for name, family, k in MODELS for s in SIZES]


def test_chart_marks_rules_and_has_no_overlapping_text():
    results = synthetic_results()
    adapts = {name: get_entry(name).sizes.adapts for name, _, _ in MODELS}
    fig = scale_chart(results, adapts)
    assert fig is not None
    assert text_overlaps(fig) == []
    found = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + fig.legends
    assert len(found) == 1  # one legend names each model once, with its exponent in every panel
    legends = [t.get_text() for t in found[0].get_texts()]
    assert len(legends) == len(MODELS) + 1 + 2  # the models, the dashed line, the two rules
    marks = rule_marks(adapts)
    assert len(marks) == 2 and set(marks.values()) == {"†", "‡"}
    vit = "ViT-128/4x4" + marks[adapts["ViT-128/4x4"]]
    assert f"{vit}   k = 0.00 · 0.00 · 0.00" in legends
    resnet = scale_series(results, METRICS[2])[0]  # ResNet-18 first: its max batch, rounded down
    assert resnet.model_name == "ResNet-18" and resnet.exponent == pytest.approx(-2.0, abs=0.01)
    assert f"ResNet-18   k = 2.00 · 2.00 · {resnet.exponent:.2f}" in legends  # no rule, no mark
    assert any("32×32 token grid" in t for t in legends) and any("at most 64×64" in t for t in legends)
    w, h = fig.get_size_inches()
    assert ASPECT_RANGE[0] <= w / h <= ASPECT_RANGE[1] and max(w, h) <= MAX_INCHES
    dashed = {line.get_gid().split("|")[1] for ax in fig.axes for line in ax.get_lines()
              if line.get_linestyle() == "--"}
    assert dashed == {name for name, _, _ in MODELS if adapts[name]}


def test_tables_show_the_exponent_per_cost():
    results = synthetic_results()
    tables = scale_tables(results, {})
    assert [t.title.split(" against")[0] for t in tables] == [m.label for m in METRICS]
    exponents = {row: t.columns[-1]._cells[i] for t in tables[:1] for i, row in enumerate(t.columns[0]._cells)}
    assert exponents["ResNet-18"] == "2.00" and exponents["ViT-128/4x4"] == "0.00"
