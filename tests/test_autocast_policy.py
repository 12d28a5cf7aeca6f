"""CUDA's autocast policy on the CPU: the table matches the installed torch, each op casts as CUDA's
kernel would, the CPU's behaviour comes back afterwards, and the estimate counts CUDA's dtypes."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from wavemix_profile.estimate.autocast_policy import (CUDA_POLICY, LOWER, SHARED_LOWER, cpu_autocast_ops,
                                             cuda_autocast_ops, cuda_autocast_policy)
from wavemix_profile.measure.memory import CpuEstimator, cuda_autocast_policy as policy_used_by_estimator
from wavemix_profile.sources.training import StepConfig

H, F32 = torch.float16, torch.float32


def test_the_table_names_exactly_the_ops_cuda_autocast_registers_in_this_torch():
    assert set(CUDA_POLICY) == cuda_autocast_ops()
    assert SHARED_LOWER <= cpu_autocast_ops()
    assert all(CUDA_POLICY[op] == LOWER for op in SHARED_LOWER)


x, w = torch.randn(4, 16), torch.randn(8, 16)
img = torch.randn(2, 3, 8, 8)
CASES = [  # (what, call, dtype CUDA autocast gives): fp16 autocast, fp32 inputs unless said
    ("linear", lambda: F.linear(x, w), H),
    ("conv2d", lambda: F.conv2d(img, torch.randn(4, 3, 3, 3)), H),
    ("matmul", lambda: x @ w.t(), H),
    ("einsum", lambda: torch.einsum("ij,kj->ik", x, w), H),
    ("mv", lambda: torch.mv(w, x[0]), H),
    ("sdpa", lambda: F.scaled_dot_product_attention(x[None], x[None], x[None]), H),
    ("softmax of fp16", lambda: torch.softmax(x.half(), -1), F32),
    ("softmax with an explicit dtype", lambda: torch.softmax(x.half(), -1, dtype=H), H),
    ("log_softmax of fp16", lambda: F.log_softmax(x.half(), -1), F32),
    ("layer_norm of fp16", lambda: F.layer_norm(x.half(), (16,)), F32),
    ("group_norm of fp16", lambda: F.group_norm(img.half(), 3), F32),
    ("exp of fp16", lambda: x.half().exp(), F32),
    ("sum of fp16", lambda: x.half().sum(), F32),
    ("mean of fp16 (no policy)", lambda: x.half().mean(), H),
    ("norm of fp16", lambda: x.half().norm(), F32),
    ("pow of fp16", lambda: x.half() ** 2, F32),
    ("cross_entropy of fp16 logits", lambda: F.cross_entropy(x.half(), torch.zeros(4, dtype=torch.long)), F32),
    ("gelu of fp16 (no policy)", lambda: F.gelu(x.half()), H),
    ("addcmul promotes", lambda: torch.addcmul(x.half(), x, x.half()), F32),
    ("cat of fp16 and fp32 (no policy: type promotion)", lambda: torch.cat([x.half(), x]), F32),
    ("cat of fp16 (CPU promotes, CUDA leaves it)", lambda: torch.cat([x.half(), x.half()]), H),
    ("max_pool3d of fp16 (CPU: fp32; CUDA: no policy)", lambda: F.max_pool3d(img.half()[None], 2), H),
    ("float64 is never cast", lambda: F.linear(x.double(), w.double()), torch.float64),
]


@pytest.mark.parametrize("what, call, expected", CASES, ids=[c[0] for c in CASES])
def test_each_op_casts_as_cuda_autocast_would(what, call, expected):
    with cuda_autocast_policy(), torch.autocast("cpu", dtype=H):
        assert call().dtype == expected


def test_the_cpu_policy_is_back_after_the_block():
    with cuda_autocast_policy():
        pass
    with torch.autocast("cpu", dtype=H):
        assert torch.softmax(x.half(), -1).dtype == H
        assert F.max_pool3d(img.half()[None], 2).dtype == F32


def test_binary_cross_entropy_is_refused_as_cuda_autocast_refuses_it():
    with cuda_autocast_policy(), torch.autocast("cpu", dtype=H), pytest.raises(RuntimeError, match="unsafe to autocast"):
        F.binary_cross_entropy(torch.rand(4), torch.rand(4))


class SoftmaxHead(nn.Module):
    """Logits through a softmax: under CUDA's policy its output is float32, 2 more bytes an element.
    At 1x1 px the input and weight copies are tiny, so the peak is the softmax's (logits + output)."""

    def __init__(self, num_classes: int, image_size: int):
        super().__init__()
        self.linear = nn.Linear(3 * image_size * image_size, num_classes, bias=False)

    def forward(self, x):
        return torch.softmax(self.linear(x.flatten(1)), -1)


def test_the_estimate_stores_what_cuda_autocast_stores(monkeypatch):
    import contextlib
    from wavemix_profile.measure import memory
    config = StepConfig(device=torch.device("cpu"), amp="fp16", num_classes=1000)

    def infer_peak():
        return CpuEstimator(lambda: SoftmaxHead(1000, 1), config).peak("infer", batch=64, image_size=1)

    cuda = infer_peak()
    monkeypatch.setattr(memory, "cuda_autocast_policy", contextlib.nullcontext)
    cpu = infer_peak()
    assert policy_used_by_estimator is cuda_autocast_policy
    assert cuda - cpu == 64 * 1000 * 2, "the softmax output: float32 on CUDA, float16 under CPU autocast"
