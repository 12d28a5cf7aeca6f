"""Every registered model, automatically: forward and backward, parameter count, bad sizes."""
import pytest
import torch

from wavemix_profile.models import (UnknownModelError, UnsupportedImageSizeError, create_model,
                                    get_entry, list_models, paper_values_for, resolve)

ALL = list_models()


def test_registry_holds_the_papers_zoo():
    expected = ["ResNet-18", "ResNet-34", "ResNet-50", "ResNet-101", "ConvMixer-256/8",
                "ConvMixer-256/16", "2D FNet-64/5", "2D FNet-128/5", "2D MLP-Mixer-64/5",
                "2D MLP-Mixer-128/5", "ViT-128/4x4", "Hybrid ViN-128/4x4", "CCT-128/4x4",
                "CvT-128/4x4", "WaveMix-16/5", "WaveMix-32/5", "WaveMix-64/5", "WaveMix-128/7",
                "WaveMix-256/7"]
    assert sorted(ALL) == sorted(expected)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_reaches_first_layer(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, image_size=32)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_params_match_paper_table1_or_gap_is_documented(name):
    entry = get_entry(name)
    ours = sum(p.numel() for p in entry.build(num_classes=100, image_size=32).parameters())
    table1 = [v for v in paper_values_for(name) if v.table == 1 and v.metric == "params"]
    if not table1:
        pytest.skip(f"{name} has no Table 1 parameter count")
    ratio = ours / (table1[0].value * 1e6)
    if abs(ratio - 1) > 0.03:
        assert entry.params_note, f"{name}: {ours} params is {ratio:.3f}x Table 1 with no params_note"
        assert name in entry.builder.__doc__ or "Table 1" in entry.builder.__doc__


@pytest.mark.parametrize("name", ALL)
def test_unsupported_size_names_model_size_and_accepted(name):
    with pytest.raises(UnsupportedImageSizeError) as err:
        create_model(name, image_size=3)
    msg = str(err.value)
    assert name in msg and "3" in msg and "accepts" in msg


@pytest.mark.parametrize("spelling", ["cct-128/4x4", "CCT-128/4×4", "CCT - 128/4 x 4", "cct-128/4X4"])
def test_names_are_case_and_times_sign_insensitive(spelling):
    assert get_entry(spelling).name == "CCT-128/4x4"


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError) as err:
        get_entry("WaveMix-128/8")
    assert "WaveMix-128/7" in str(err.value)


def test_globs_select_families_in_order():
    assert resolve(["WaveMix-*"]) == ["WaveMix-16/5", "WaveMix-32/5", "WaveMix-64/5",
                                      "WaveMix-128/7", "WaveMix-256/7"]
    assert resolve(["resnet-1*", "ResNet-18"]) == ["ResNet-18", "ResNet-101"]
