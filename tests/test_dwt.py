"""The native Haar DWT against pytorch_wavelets (the paper's backend) and hand-made cases."""
import sys

import pytest
import torch

from wavemix_profile.models.dwt import HaarDWT

pytest.importorskip("pytorch_wavelets")

ATOL = 1e-5


def _both(levels):
    return HaarDWT(levels=levels), HaarDWT(levels=levels, backend="pytorch_wavelets")


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("channels", [1, 3, 16])
@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
def test_backends_agree_on_values_and_input_gradients(levels, channels, channels_last):
    torch.manual_seed(levels * 100 + channels)
    # Odd batch, and H != W so a swapped height/width axis cannot pass unnoticed.
    x = torch.randn(3, channels, 32, 64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    native, reference = _both(levels)
    grads, outs = [], []
    for dwt in (native, reference):
        leaf = x.clone().requires_grad_(True)
        out = dwt(leaf)
        # Weight every level by a fixed random tensor so each output element reaches the grad.
        torch.manual_seed(7)
        sum((level * torch.randn_like(level)).sum() for level in out).backward()
        outs.append(out)
        grads.append(leaf.grad)
    assert [o.shape for o in outs[0]] == [
        (3, 4 * channels, 32 // 2 ** j, 64 // 2 ** j) for j in range(1, levels + 1)]
    for ours, theirs in zip(*outs):
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=ATOL, rtol=0)


def test_native_backward_and_double_backward_pass_gradcheck():
    # The native backward is the hand-written inverse transform: check it numerically, in
    # float64, through two levels (the second fed by the first one's approximation).
    dwt = HaarDWT(levels=2)
    x = torch.randn(3, 2, 8, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(dwt(t)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: tuple(dwt(t)), (x,))


@pytest.mark.parametrize("levels", [1, 3, 5])
def test_levels_match_the_authors_multilevel_dwtforward(levels):
    from pytorch_wavelets import DWTForward

    x = torch.randn(1, 5, 32, 32)
    approx, details = DWTForward(J=levels, mode="zero", wave="haar")(x)
    out = HaarDWT(levels=levels)(x)
    for level, yh in zip(out, details):
        b, c, _, h, w = yh.shape
        torch.testing.assert_close(level[:, c:], yh.reshape(b, 3 * c, h, w), atol=ATOL, rtol=0)
    torch.testing.assert_close(out[-1][:, :5], approx, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["native", "pytorch_wavelets"])
def test_constant_image_has_only_approximation(backend):
    out = HaarDWT(levels=3, backend=backend)(torch.full((1, 2, 16, 16), 1.5))
    for j, level in enumerate(out, start=1):
        # Orthonormal Haar: each level's LL is twice the previous one's constant value.
        torch.testing.assert_close(level[:, :2], torch.full((1, 2) + level.shape[2:], 1.5 * 2 ** j))
        assert level[:, 2:].abs().max() < 1e-6


@pytest.mark.parametrize("backend", ["native", "pytorch_wavelets"])
def test_subband_order_and_channel_major_layout(backend):
    block = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # [[a, b], [c, d]]
    x = torch.stack([block, 10 * block]).unsqueeze(0)  # channel 1 = 10 x channel 0
    (level,) = HaarDWT(levels=1, backend=backend)(x)
    # LL = (a+b+c+d)/2; band 0 = (a+b-c-d)/2 (high along H); band 1 = (a-b+c-d)/2 (high along
    # W); band 2 = (a-b-c+d)/2. Layout: LL of every channel, then the 3 bands of channel 0, ...
    expected = torch.tensor([5.0, 50.0, -2.0, -1.0, 0.0, -20.0, -10.0, 0.0])
    torch.testing.assert_close(level.flatten(), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["native", "pytorch_wavelets"])
def test_stripes_along_width_land_in_band_1_only(backend):
    stripes = (torch.arange(8) % 2).float().expand(1, 1, 8, 8)  # varies along W only
    (level,) = HaarDWT(levels=1, backend=backend)(stripes)
    ll, band0, band1, band2 = level[0]
    torch.testing.assert_close(ll, torch.ones(4, 4))
    torch.testing.assert_close(band1, -torch.ones(4, 4))
    assert band0.abs().max() < 1e-6 and band2.abs().max() < 1e-6


@pytest.mark.parametrize("backend", ["native", "pytorch_wavelets"])
@pytest.mark.parametrize("height, width", [(30, 32), (32, 30), (33, 33)])
def test_size_not_divisible_by_two_to_the_levels_raises(backend, height, width):
    with pytest.raises(ValueError, match="divisible by 4"):
        HaarDWT(levels=2, backend=backend)(torch.randn(1, 1, height, width))


def test_unknown_backend_names_the_accepted_ones():
    with pytest.raises(ValueError) as err:
        HaarDWT(levels=1, backend="pywt")
    assert "'pywt'" in str(err.value)
    assert "'native'" in str(err.value) and "'pytorch_wavelets'" in str(err.value)


@pytest.mark.parametrize("levels", [0, -1, 1.5])
def test_levels_must_be_a_positive_integer(levels):
    with pytest.raises(ValueError, match="levels"):
        HaarDWT(levels=levels)


def test_backends_keep_no_state_so_checkpoints_swap():
    native, reference = _both(2)
    assert native.state_dict() == {} and reference.state_dict() == {}
    assert list(reference.buffers())  # the filters are still there, just not saved


def test_missing_pytorch_wavelets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_wavelets", None)  # import now raises ImportError
    with pytest.raises(ImportError, match="pytorch-wavelets"):
        HaarDWT(levels=1, backend="pytorch_wavelets")
    HaarDWT(levels=1)  # the native backend does not need it
