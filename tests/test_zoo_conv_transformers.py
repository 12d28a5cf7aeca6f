"""ResNets, ConvMixers and the four transformers: exact sizes, stems, token grids, attentions."""
import pytest
import torch
import torchvision
from einops import rearrange

from wavemix_profile.models import UnsupportedImageSizeError, create_model, get_entry, list_models

# A family module registers its models when first imported: load the registry (in Table 1's
# order) before importing vin directly, or ViN would be listed ahead of ViT.
ALL = list_models()
from wavemix_profile.models._attention import attend  # noqa: E402
from wavemix_profile.models.vin import NystromAttention, iterative_pinv  # noqa: E402

# Exact counts at 100 classes, 32 px, default options. Hand-derived:
#
# ResNet-18, CIFAR stem: conv1 3*3*3*64 = 1,728 + bn1 128 = 1,856.
#   layer1: 2 blocks x (2 x 3x3 64->64 = 73,728 + 2 BN 256)                    =   147,968
#   layer2: 73,728 + 147,456 + 512 + 1x1 shortcut 8,192 + 256; + 2 x 147,456 + 512 = 525,568
#   layer3: 294,912 + 589,824 + 1,024 + 32,768 + 512; + 2 x 589,824 + 1,024       = 2,099,712
#   layer4: 1,179,648 + 2,359,296 + 2,048 + 131,072 + 1,024; + 2 x 2,359,296 + 2,048 = 8,393,728
#   fc 512*100 + 100 = 51,300.   Sum: 11,220,132.
# ConvMixer-256/d: patch conv 3*256 + 256 = 1,024, BN 512; per block depth-wise 256*8*8 + 256
#   = 16,640, BN 512, point-wise 256*256 + 256 = 65,792, BN 512 -> 83,456; head 256*100 + 100
#   = 25,700. d = 8: 1,536 + 667,648 + 25,700 = 694,884; d = 16: 1,536 + 1,335,296 + 25,700
#   = 1,362,532.
# ViT-128/4x4: pixel embedding 3*128 + 128 = 512, class token 128, positions 1025*128 = 131,200;
#   per layer 2 LN 512 + qkv 128*384 = 49,152 + out 128*128 + 128 = 16,512 + MLP 128*256 + 256
#   + 256*128 + 128 = 65,920 -> 132,096 (x4 = 528,384); head LN 256 + 12,900. Sum: 673,380.
PARAMS_100_CLASSES_32PX = {
    "ResNet-18": 11_220_132,
    "ResNet-34": 21_328_292,
    "ResNet-50": 23_705_252,
    "ResNet-101": 42_697_380,
    "ConvMixer-256/8": 694_884,
    "ConvMixer-256/16": 1_362_532,
    "ViT-128/4x4": 673_380,
    "Hybrid ViN-128/4x4": 766_644,
    "CCT-128/4x4": 1_048_229,
    "CvT-128/4x4": 1_097_060,
}
OURS = list(PARAMS_100_CLASSES_32PX)
ATTENTION_MODELS = ["ViT-128/4x4", "Hybrid ViN-128/4x4", "CCT-128/4x4", "CvT-128/4x4"]
# The counts our notes say reproduce Table 1: 10 classes (CIFAR-10), counted as torchsummary
# counts (only modules' `weight` and `bias`, so not the bare positional/class-token parameters),
# with Table 1's value and the size of its last printed digit.
TABLE1_BY_TORCHSUMMARY_AT_10_CLASSES = {
    "ConvMixer-256/8": (671_754, 0.67, 0.01),
    "ConvMixer-256/16": (1_339_402, 1.3, 0.1),
    "ViT-128/4x4": (530_442, 0.53, 0.01),
    "Hybrid ViN-128/4x4": (623_706, 0.62, 0.01),
    "CCT-128/4x4": (905_547, 0.90, 0.01),
}


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _torchsummary_count(model):
    return sum(getattr(m, attr).numel() for m in model.modules() for attr in ("weight", "bias")
               if isinstance(getattr(m, attr, None), torch.nn.Parameter))


def test_registered_in_table1_order_with_families():
    assert list_models("ResNet-*") + list_models("ConvMixer-*") == OURS[:6]
    assert [n for n in ALL if n in ATTENTION_MODELS] == ATTENTION_MODELS
    assert {get_entry(n).family for n in OURS[:4]} == {"convolutional"}
    assert {get_entry(n).family for n in OURS[4:6]} == {"token mixer"}
    assert {get_entry(n).family for n in ATTENTION_MODELS} == {"transformer"}
    assert {get_entry(a).name for a in ("hyb. vin-128/4×4", "ViN-128/4x4")} == {ATTENTION_MODELS[1]}


@pytest.mark.parametrize("name", OURS)
def test_exact_parameter_count_and_docstring_agree(name):
    ours = _count(create_model(name, num_classes=100, image_size=32))
    assert ours == PARAMS_100_CLASSES_32PX[name]
    assert f"{ours:,}" in get_entry(name).description


@pytest.mark.parametrize("name", ["ResNet-50", "ConvMixer-256/8", "ConvMixer-256/16",
                                  "ViT-128/4x4", "Hybrid ViN-128/4x4", "CCT-128/4x4"])
def test_documented_gaps_name_ours(name):
    entry = get_entry(name)
    assert f"{PARAMS_100_CLASSES_32PX[name]:,}" in entry.params_note
    assert "Table 1" in entry.params_note and "Table 1" in entry.description


@pytest.mark.parametrize("name", ["ResNet-18", "ResNet-34", "CvT-128/4x4"])
def test_models_within_3_percent_carry_no_note(name):
    assert get_entry(name).params_note == ""


@pytest.mark.parametrize("name", list(TABLE1_BY_TORCHSUMMARY_AT_10_CLASSES))
def test_table1_is_reproduced_as_the_notes_say(name):
    expected, table1, last_digit = TABLE1_BY_TORCHSUMMARY_AT_10_CLASSES[name]
    counted = _torchsummary_count(create_model(name, num_classes=10, image_size=32))
    assert counted == expected
    assert abs(counted / 1e6 - table1) < last_digit  # the table rounds to 2 significant digits
    assert f"{expected:,}" in get_entry(name).params_note


def test_resnet_cifar_stem_is_default_and_imagenet_stem_is_torchvisions():
    cifar = create_model("ResNet-18", num_classes=100, image_size=32)
    imagenet = create_model("ResNet-18", num_classes=100, image_size=32, stem="imagenet")
    assert (cifar.conv1.kernel_size, cifar.conv1.stride, cifar.conv1.bias) == ((3, 3), (1, 1), None)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    assert (imagenet.conv1.kernel_size, imagenet.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    assert _count(imagenet) == _count(torchvision.models.resnet18(num_classes=100)) == 11_227_812
    x = torch.randn(2, 3, 32, 32)
    for model, side in ((cifar, 32), (imagenet, 8)):  # the first stage's map
        with torch.inference_mode():
            stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        assert stem.shape == (2, 64, side, side)


def test_resnet_imagenet_stem_needs_32px_and_stem_is_checked():
    create_model("ResNet-18", num_classes=10, image_size=16)  # the CIFAR stem takes it
    with pytest.raises(UnsupportedImageSizeError, match=r"ResNet-18.*16 px.*at least 32"):
        create_model("ResNet-18", num_classes=10, image_size=16, stem="imagenet")
    with pytest.raises(ValueError, match="cifar"):
        create_model("ResNet-18", stem="tiny")


@pytest.mark.parametrize("size, patch", [(28, 1), (32, 1), (64, 2), (96, 3)])
def test_convmixer_patch_keeps_the_token_grid_near_32(size, patch):
    model = create_model("ConvMixer-256/8", num_classes=10, image_size=size)
    assert model.embed[0].kernel_size == model.embed[0].stride == (patch, patch)
    with torch.inference_mode():
        grid = model.embed(torch.randn(2, 3, size, size))
    assert grid.shape == (2, 256, size // patch, size // patch)


@pytest.mark.parametrize("name", OURS)
def test_output_shape_at_64px(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, image_size=64).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_transformers_take_28px_with_784_pixel_tokens(name):
    model = create_model(name, num_classes=7, image_size=28).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("name", OURS[4:])
def test_token_grid_sizes(name):
    sizes = get_entry(name).sizes
    assert all(sizes.check(s) for s in (8, 28, 32, 64, 96, 224, 256))
    with pytest.raises(UnsupportedImageSizeError, match=r"100 .*accepts.*max\(1, size // 32\)"):
        create_model(name, image_size=100)  # 3 px patches do not tile 100 px


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_eager_and_sdpa_attention_agree(name):
    torch.manual_seed(0)
    eager = create_model(name, num_classes=10, image_size=32).eval()
    sdpa = create_model(name, num_classes=10, image_size=32, attention="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    kinds = [m.attention for m in sdpa.modules() if isinstance(getattr(m, "attention", None), str)]
    assert kinds == ["sdpa"] * 4  # one attention module per layer really switched
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(sdpa(x), eager(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_unknown_attention_names_the_accepted_values(name):
    accepted = r"attention must be one of \('eager', 'sdpa'\), got 'flash'"
    with pytest.raises(ValueError, match=accepted):
        create_model(name, attention="flash")


def test_iterative_pinv_satisfies_penrose_condition_on_softmax_kernels():
    torch.manual_seed(0)
    kernel = torch.randn(2, 4, 64, 64).softmax(dim=-1)  # what the landmark kernel looks like
    inverse = iterative_pinv(kernel, iterations=6)
    assert (kernel @ inverse @ kernel - kernel).abs().max() < 1e-2
    # Per-matrix norms: an image's result does not depend on what else is in the batch.
    torch.testing.assert_close(iterative_pinv(kernel[:1], iterations=6), inverse[:1])


def test_nystrom_with_a_landmark_per_token_is_exact_attention():
    torch.manual_seed(0)
    layer = NystromAttention(dim=32, heads=2, dim_head=16, landmarks=64, pinv_iterations=30).eval()
    x = torch.randn(2, 16, 32)  # 16 tokens < 64 landmarks: every token is its own landmark
    with torch.inference_mode():
        q, k, v = rearrange(layer.to_qkv(x), "b n (three h d) -> three b h n d", three=3, h=2)
        exact = attend(q, k, v, attention="eager", scale=16 ** -0.5) + layer.value_conv(v)
        expected = layer.to_out(rearrange(exact, "b h n d -> b n (h d)"))
        torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=0)


def test_cct_sine_positions_are_a_buffer_not_parameters():
    learnable = create_model("CCT-128/4x4", num_classes=100, image_size=32)
    sine = create_model("CCT-128/4x4", num_classes=100, image_size=32, positional_embedding="sine")
    assert _count(learnable) - _count(sine) == 1024 * 128
    assert _count(sine) == 917_157 and "917,157" in get_entry("CCT-128/4x4").description
    with pytest.raises(ValueError, match="learnable"):
        create_model("CCT-128/4x4", positional_embedding="rope")
