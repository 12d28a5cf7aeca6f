"""WaveMix, 2D FNet and 2D MLP-Mixer: exact sizes, shapes, DWT backends and accepted image sizes."""
import pytest
import torch

from wavemix_profile.models import (UnsupportedImageSizeError, create_model, get_entry,
                                    list_models)
from wavemix_profile.models.wavemix import block_map_size, stem_strides

# Hand-computed at 100 classes, 32 px (see the builders' docstrings for the arithmetic's parts).
PARAMS_100_CLASSES_32PX = {
    "2D FNet-64/5": 109_412,
    "2D FNet-128/5": 419_428,
    "2D MLP-Mixer-64/5": 151_972,
    "2D MLP-Mixer-128/5": 461_988,
    "WaveMix-16/5": 163_432,
    "WaveMix-32/5": 644_588,
    "WaveMix-64/5": 2_560_372,
    "WaveMix-128/7": 2_416_580,
    "WaveMix-256/7": 9_625_380,
}
WAVEMIX = [n for n in PARAMS_100_CLASSES_32PX if n.startswith("WaveMix")]
MULTILEVEL = ["WaveMix-16/5", "WaveMix-32/5", "WaveMix-64/5"]
LITE = ["WaveMix-128/7", "WaveMix-256/7"]


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_families_are_registered_in_table1_order():
    assert list_models("2D*") + list_models("WaveMix-*") == list(PARAMS_100_CLASSES_32PX)
    assert {get_entry(n).family for n in WAVEMIX} == {"WaveMix"}
    assert {get_entry(n).family for n in list_models("2D*")} == {"token mixer"}


@pytest.mark.parametrize("name", list(PARAMS_100_CLASSES_32PX))
def test_exact_parameter_count_and_docstring_agree(name):
    ours = _count(create_model(name, num_classes=100, image_size=32))
    assert ours == PARAMS_100_CLASSES_32PX[name]
    # The number a reader sees in the docstring is the one the model has.
    assert f"{ours:,}" in get_entry(name).description


@pytest.mark.parametrize("name", LITE)
def test_lite_models_match_table1_exactly(name):
    table1 = {"WaveMix-128/7": 2.42, "WaveMix-256/7": 9.62}[name]
    # Within one unit of Table 1's last digit: 9,625,380 prints as 9.62 when truncated, and
    # 2,416,580 as 2.42 when rounded, so the table's rounding rule cannot be pinned tighter.
    assert abs(PARAMS_100_CLASSES_32PX[name] / 1e6 - table1) < 0.01
    assert get_entry(name).params_note == ""


@pytest.mark.parametrize("name", MULTILEVEL + ["2D FNet-64/5"])
def test_documented_gaps_name_paper_and_ours(name):
    entry = get_entry(name)
    assert f"{PARAMS_100_CLASSES_32PX[name]:,}" in entry.params_note
    assert "Table 1" in entry.params_note and "Table 1" in entry.description


@pytest.mark.parametrize("name", list(PARAMS_100_CLASSES_32PX))
def test_output_shape_at_64px(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, image_size=64).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("name", WAVEMIX)
def test_wavemix_output_shape_at_large_sizes(name, size):
    model = create_model(name, num_classes=5, image_size=size).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


@pytest.mark.parametrize("name", WAVEMIX)
def test_both_dwt_backends_give_the_same_output(name):
    torch.manual_seed(0)
    native = create_model(name, num_classes=10, image_size=32).eval()
    reference = create_model(name, num_classes=10, image_size=32,
                             dwt_backend="pytorch_wavelets").eval()
    reference.load_state_dict(native.state_dict())  # strict: the DWT adds no state
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        ours, theirs = native(images), reference(images)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_unknown_dwt_backend_is_rejected():
    with pytest.raises(ValueError, match="pytorch_wavelets"):
        create_model("WaveMix-16/5", dwt_backend="pywavelets")


@pytest.mark.parametrize("size", [28, 96, 224, 48, 16])
@pytest.mark.parametrize("name", MULTILEVEL)
def test_multilevel_rejects_maps_the_dwt_cannot_halve_to_2x2(name, size):
    with pytest.raises(UnsupportedImageSizeError) as err:
        create_model(name, image_size=size)
    assert name in str(err.value) and "powers of two from 32 px" in str(err.value)


@pytest.mark.parametrize("size", [28, 32, 64, 96, 224, 256])
def test_lite_accepts_the_papers_sizes(size):
    for name in LITE:
        create_model(name, image_size=size)  # must not raise


@pytest.mark.parametrize("size", [28, 96])
def test_lite_runs_on_maps_that_are_not_powers_of_two(size):
    model = create_model("WaveMix-128/7", num_classes=3, image_size=size).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


@pytest.mark.parametrize("size", [33, 66, 130])
def test_lite_rejects_sizes_whose_stem_output_is_odd(size):
    assert block_map_size(size) % 2 == 1
    with pytest.raises(UnsupportedImageSizeError, match="even"):
        create_model("WaveMix-128/7", image_size=size)


@pytest.mark.parametrize("size, strides, map_size", [
    (28, (1, 1), 28), (32, (1, 1), 32), (64, (1, 1), 64), (96, (2, 1), 48),
    (128, (2, 1), 64), (224, (2, 2), 56), (256, (2, 2), 64), (512, (4, 2), 64)])
def test_stem_strides_bring_maps_to_at_most_64(size, strides, map_size):
    assert stem_strides(size) == strides
    assert block_map_size(size) == map_size


def test_64x64_map_uses_four_levels_so_the_concat_stays_dim():
    model = create_model("WaveMix-16/5", num_classes=100, image_size=64)
    block = model.blocks[0]
    assert block.dwt.levels == 4 and len(block.upsample) == 4
    assert sum(up.out_channels for up in block.upsample) == 16
    assert _count(model) == PARAMS_100_CLASSES_32PX["WaveMix-16/5"]


@pytest.mark.parametrize("alias, name", [
    ("FNet-64/5", "2D FNet-64/5"), ("fnet2d-128/5", "2D FNet-128/5"),
    ("MLP-Mixer-64/5", "2D MLP-Mixer-64/5"), ("2d mlp-mixer-128/5", "2D MLP-Mixer-128/5")])
def test_token_mixer_aliases(alias, name):
    assert get_entry(alias).name == name


def test_mlp_mixer_count_follows_the_map_size():
    at_32 = _count(create_model("2D MLP-Mixer-64/5", num_classes=100, image_size=32))
    at_64 = _count(create_model("2D MLP-Mixer-64/5", num_classes=100, image_size=64))
    # Per block: two (LayerNorm + MLP s -> 2s -> s) grow from s = 32 to s = 64.
    per_axis = lambda s: 2 * s + (s * 2 * s + 2 * s) + (2 * s * s + s)  # noqa: E731
    assert at_64 - at_32 == 5 * 2 * (per_axis(64) - per_axis(32))


def test_builder_options_override_the_config():
    model = create_model("WaveMix-128/7", dropout=0.0)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    with pytest.raises(TypeError):
        create_model("WaveMix-128/7", no_such_option=1)
