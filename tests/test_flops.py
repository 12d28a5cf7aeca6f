"""FLOP counting against hand-computed figures (MACs unless a name says FLOPs; all per image)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from wavemix_profile.measure.flops import (ELEMENTWISE_FLOP_FORMULAS, FLOP_FORMULAS, ZERO_COST_OPS, FlopCount,
                                   _fake_tallies, count_flops)
from wavemix_profile.models.dwt import HaarDWT
from wavemix_profile.core.results import FlopsResult


class Fn(nn.Module):
    """A parameter-free module around a tensor function."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def conv_macs(out_hw: int, c_out: int, c_in: int, k: int) -> int:
    return out_hw * out_hw * c_out * c_in * k * k


def cifar_resnet18() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def resnet_stage_macs(hw: int, c_in: int, c_out: int) -> int:
    """A torchvision resnet18 stage that halves the size: strided 3x3, three 3x3, 1x1 shortcut."""
    return (conv_macs(hw, c_out, c_in, 3) + 3 * conv_macs(hw, c_out, c_out, 3)
            + conv_macs(hw, c_out, c_in, 1))


def test_resnet18_224_matches_torchvision_metadata_and_fvcore():
    model = torchvision.models.resnet18(weights=None).eval()
    stem = conv_macs(112, 64, 3, 7)
    macs = (stem + 4 * conv_macs(56, 64, 64, 3) + resnet_stage_macs(28, 64, 128)
            + resnet_stage_macs(14, 128, 256) + resnet_stage_macs(7, 256, 512) + 512 * 1000)
    assert macs == 1_814_073_344
    count = count_flops(model, torch.randn(1, 3, 224, 224))
    assert count.forward_macs_per_image == macs
    assert round(macs / 1e9, 3) == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"]
    assert count.forward_flops_per_image == 2 * macs
    # Backward repeats every matmul/conv twice (input grad, weight grad) except the stem's input
    # grad: the image needs none.
    assert count.train_step_flops_per_image == 2 * (3 * macs - stem)
    assert count.uncounted_ops == ()
    # fvcore also counts eval batch norm (2 per element: scale and shift) and the global average
    # pool (1 per input element), which is why timm quotes 1.82 G for resnet18.
    bn_elements = (64 * 112 * 112 + 4 * 64 * 56 * 56 + 5 * 128 * 28 * 28 + 5 * 256 * 14 * 14
                   + 5 * 512 * 7 * 7)
    assert count.fvcore_macs_per_image == macs + 2 * bn_elements + 512 * 7 * 7 == 1_819_065_856
    assert count.fvcore_unsupported_ops == ("aten::add_ x8", "aten::max_pool2d x1")
    assert count.fvcore_error is None
    assert not model.training and not any(m.training for m in model.modules())


def test_cifar_resnet18_at_32px_and_batch_size_does_not_change_per_image_figures():
    macs = (conv_macs(32, 64, 3, 3) + 4 * conv_macs(32, 64, 64, 3) + resnet_stage_macs(16, 64, 128)
            + resnet_stage_macs(8, 128, 256) + resnet_stage_macs(4, 256, 512) + 512 * 10)
    assert macs == 555_422_720
    model = cifar_resnet18()
    one, three = (count_flops(model, torch.randn(b, 3, 32, 32), strict=True) for b in (1, 3))
    assert one.forward_macs_per_image == three.forward_macs_per_image == macs
    assert one.train_step_flops_per_image == three.train_step_flops_per_image
    assert one.fvcore_macs_per_image == three.fvcore_macs_per_image
    # The only batch-independent work: each batch norm's num_batches_tracked += 1.
    assert one.train_step_elementwise_flops_per_image - three.train_step_elementwise_flops_per_image \
        == 20 - round(20 / 3)


def test_counting_restores_modes_statistics_and_gradients():
    model = cifar_resnet18().train()
    model.fc.eval()
    before = model.bn1.running_mean.clone()
    count_flops(model, torch.randn(2, 3, 32, 32), with_fvcore=True)
    assert model.training and not model.fc.training
    assert torch.equal(model.bn1.running_mean, before)
    assert all(p.grad is None for p in model.parameters())


def test_eval_counting_gives_the_same_forward_and_no_train_step():
    count = count_flops(cifar_resnet18(), torch.randn(2, 3, 32, 32), train=False, with_fvcore=False)
    assert count.forward_macs_per_image == 555_422_720
    assert count.train_step_flops_per_image is None
    assert count.train_step_elementwise_flops_per_image is None


def test_transposed_conv_counts_per_input_pixel():
    model = nn.ConvTranspose2d(128, 128, 4, stride=2, padding=1)
    count = count_flops(model, torch.randn(3, 128, 16, 16), strict=True, with_fvcore=False)
    assert count.forward_macs_per_image == 16 * 16 * 128 * 128 * 4 * 4 == 67_108_864
    assert count.train_step_flops_per_image == 2 * 2 * 67_108_864  # forward + weight grad


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_depthwise_conv_with_same_padding():
    model = nn.Conv2d(256, 256, 8, groups=256, padding="same")
    count = count_flops(model, torch.randn(2, 256, 14, 14), strict=True, with_fvcore=False)
    assert count.forward_macs_per_image == 14 * 14 * 256 * 8 * 8  # one input channel per filter
    # Backward: weight grad only (the input needs no grad), the same multiply-adds again; torch's
    # own formula would count it 256 (= groups) times over.
    assert count.train_step_flops_per_image == 2 * 2 * count.forward_macs_per_image
    x = torch.randn(2, 256, 14, 14, requires_grad=True)
    count = count_flops(model, x, with_fvcore=False)
    assert count.train_step_flops_per_image == 3 * 2 * count.forward_macs_per_image  # + input grad


def test_linear_backward_counts_the_input_grad_only_when_the_input_needs_it():
    model, batch = nn.Linear(64, 32), 4
    forward = 2 * 64 * 32
    plain = count_flops(model, torch.randn(batch, 64), strict=True, with_fvcore=False)
    assert plain.forward_flops_per_image == forward and plain.forward_macs_per_image == 64 * 32
    assert plain.train_step_flops_per_image == forward + forward  # + weight grad
    x = torch.randn(batch, 64, requires_grad=True)
    with_input_grad = count_flops(model, x, with_fvcore=False)
    assert with_input_grad.train_step_flops_per_image == 3 * forward  # + weight grad + input grad
    assert x.grad is None
    # Elementwise: the loss's sum and the bias grad's sum over the batch, 32 outputs each.
    assert plain.forward_elementwise_flops_per_image == 0
    assert plain.train_step_elementwise_flops_per_image == 32 + 32


def test_haar_dwt_is_counted_not_zero():
    c, size = 8, 16
    x = torch.randn(2, c, size, size)
    native = count_flops(HaarDWT(levels=1), x, strict=True, with_fvcore=False)
    # Sums and differences: elementwise. Each of the C*H*W coefficients it writes comes out of at
    # least one add or subtract (the exact count depends on how the butterflies are fused).
    assert native.forward_elementwise_flops_per_image >= c * size * size > 0
    reference = count_flops(HaarDWT(levels=1, backend="pytorch_wavelets"), x, strict=True,
                            with_fvcore=False)
    # Two strided depthwise convolutions with length-2 filters, 2 MACs per input element each.
    assert reference.forward_macs_per_image == 4 * c * size * size > 0


def fft_flops(numel: int, transformed: int, fraction: float = 1.0) -> int:
    """5 N log2 N per length-N complex transform, numel / N transforms; real transforms half."""
    return round(fraction * 5 * numel * math.log2(transformed))


@pytest.mark.parametrize("fn, flops", [
    (torch.fft.fft2, fft_flops(8 * 16 * 16, 16 * 16)),  # real input promoted to complex
    (lambda t: torch.fft.fftn(t, dim=(1, 2, 3)), fft_flops(8 * 16 * 16, 8 * 16 * 16)),
    (torch.fft.rfft, fft_flops(8 * 16 * 16, 16, 0.5)),
    (lambda t: torch.fft.irfft(torch.fft.rfft(t)), 2 * fft_flops(8 * 16 * 16, 16, 0.5)),
], ids=["fft2", "fftn-3d", "rfft", "rfft-irfft"])
def test_fft_follows_the_stated_formula(fn, flops):
    count = count_flops(Fn(fn), torch.randn(2, 8, 16, 16), strict=True)
    assert count.forward_flops_per_image == flops > 0
    assert count.fvcore_macs_per_image == 0 and any(op.startswith("aten::fft_") for op in
                                                    count.fvcore_unsupported_ops)


class Attention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.scaled_dot_product_attention(x * self.scale, x, x)


def test_cpu_attention_kernel_is_counted():
    b, h, length, e = 2, 4, 10, 16
    count = count_flops(Attention(e), torch.randn(b, h, length, e), strict=True)
    per_image = h * length * length * e
    assert count.forward_flops_per_image == 4 * per_image  # Q K^T and P V
    # Backward recomputes Q K^T, then dV, dP, dQ, dK: five matmuls.
    assert count.train_step_flops_per_image == 4 * per_image + 10 * per_image
    assert "aten::scaled_dot_product_attention x1" in count.fvcore_unsupported_ops


def test_ops_without_formula_are_reported_and_strict_raises():
    model = Fn(torch.linalg.inv)
    x = torch.randn(2, 8, 8)
    assert count_flops(model, x, with_fvcore=False).uncounted_ops == ("aten.linalg_inv_ex",)
    with pytest.raises(ValueError, match="aten.linalg_inv_ex"):
        count_flops(model, x, strict=True, with_fvcore=False)


def test_tables_are_disjoint_and_results_fit_the_stored_schema():
    assert not set(FLOP_FORMULAS) & set(ELEMENTWISE_FLOP_FORMULAS)
    assert not (set(FLOP_FORMULAS) | set(ELEMENTWISE_FLOP_FORMULAS)) & ZERO_COST_OPS
    assert set(FlopsResult.__dataclass_fields__) <= set(FlopCount.__dataclass_fields__)


# --- counting on fake tensors (what measure does): the same count, no arithmetic -----------------

class _Tied(nn.Module):
    """An embedding and a head that share one weight: its gradient is accumulated from both uses."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(16, 16, bias=False)
        self.out = nn.Linear(16, 16, bias=False)
        self.out.weight = self.inp.weight
        self.register_buffer("scale", torch.full((16,), 0.5))

    def forward(self, x):
        return self.out(torch.relu(self.inp(x)) * self.scale)


class _ReadsValues(nn.Module):
    """Control flow on a value: fake tensors have none, so the count falls back to real ones."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x) if x.sum().item() > -1e9 else self.fc(x) * 2


@pytest.mark.parametrize("name, make, shape", [
    ("resnet18", cifar_resnet18, (2, 3, 32, 32)),
    ("tied", _Tied, (3, 16)),
    ("reads values", _ReadsValues, (2, 8)),
    ("haar dwt", lambda: HaarDWT(levels=2), (2, 4, 16, 16)),
])
@pytest.mark.parametrize("train", [True, False])
def test_on_fakes_counts_what_real_tensors_count_and_leaves_the_model_alone(name, make, shape, train):
    torch.manual_seed(0)
    model, x = make(), torch.randn(*shape, requires_grad=(name == "tied"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fake = count_flops(model, x, train=train, with_fvcore=False, on_fakes=True)
    assert {k: v for k, v in model.state_dict().items()}.keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "weights and statistics kept"
    assert all(p.grad is None for p in model.parameters()) and x.grad is None
    real = count_flops(model, x, train=train, with_fvcore=False)
    assert fake == real
    assert fake.forward_flops_per_image > 0 or name == "haar dwt"
    ran_on_fakes = _fake_tallies(model, x, train) is not None
    assert ran_on_fakes == (name != "reads values"), "fakes wherever the model does not read values"
