"""CUDA's autocast cast policy, applied to the CPU's estimate so that it predicts a GPU's dtypes.

Under `torch.autocast("cpu")` softmax, log_softmax, layer_norm, exp and sum stay in the low
precision; under CUDA autocast they run in float32, and attention probabilities, which dominate a
transformer's memory, are then stored at 4 bytes an element instead of 2. `cuda_autocast_policy()`
re-registers, for as long as it is entered, the AutocastCPU kernels of every op whose CUDA policy
differs from the CPU's, so a fake CPU step casts as a CUDA step would: casts happen above autograd,
as real autocast's do, so what backward saves has CUDA's dtypes too. Ops that both devices run in
low precision keep the CPU's own kernels (which cache the low-precision copies of weights for the
autocast region, as CUDA's do).

The policy is data (CUDA_POLICY), one entry per op that has an AutocastCUDA kernel, each from
SOURCE; tests check it against the kernels registered in the installed torch.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

import torch

SOURCE = ("PyTorch aten/src/ATen/autocast_mode.h and autocast_mode.cpp: AT_FORALL_LOWER_PRECISION_FP, "
          "AT_FORALL_FP32, AT_FORALL_FP32_SET_OPT_DTYPE, AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE, AT_FORALL_PROMOTE "
          "and the AutocastCUDA registrations (the AMP documentation's 'CUDA Ops that can autocast to "
          "float16 / float32' name the same ops in Python)")

LOWER, FP32, FP32_OPT_DTYPE, FP32_APPEND_DTYPE, PROMOTE, BANNED = (
    "lower_precision_fp", "fp32", "fp32_set_opt_dtype", "fp32_append_dtype", "promote", "banned")

_LOWER_OPS = """_convolution _convolution.deprecated conv1d conv2d conv3d conv_tbc conv_transpose1d
conv_transpose2d.input conv_transpose3d.input convolution prelu addmm addmv addr matmul einsum mm mv linalg_vecdot
linear addbmm baddbmm bmm chain_matmul linalg_multi_dot _thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell
gru_cell rnn_tanh_cell rnn_relu_cell _scaled_dot_product_flash_attention scaled_dot_product_attention
cudnn_convolution cudnn_convolution_transpose _cudnn_rnn"""
_FP32_OPS = """acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow.Tensor_Scalar
pow.Tensor_Tensor pow.Scalar softplus layer_norm native_layer_norm group_norm rms_norm frobenius_norm.dim
nuclear_norm nuclear_norm.dim cosine_similarity poisson_nll_loss cosine_embedding_loss nll_loss nll_loss2d
hinge_embedding_loss kl_div l1_loss smooth_l1_loss huber_loss mse_loss margin_ranking_loss multilabel_margin_loss
soft_margin_loss triplet_margin_loss multi_margin_loss binary_cross_entropy_with_logits dist pdist cdist renorm
logsumexp linalg_matrix_sqrth upsample_nearest1d _upsample_nearest_exact1d upsample_nearest2d _upsample_nearest_exact2d
upsample_nearest3d _upsample_nearest_exact3d upsample_linear1d upsample_bilinear2d _upsample_bilinear2d_aa
upsample_trilinear3d upsample_bicubic2d _upsample_bicubic2d_aa"""
_FP32_OPT_DTYPE_OPS = """prod prod.dim_int softmax.int log_softmax.int cumprod cumsum linalg_vector_norm
linalg_matrix_norm linalg_matrix_norm.str_ord sum sum.dim_IntList"""
_PROMOTE_OPS = "addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler index_put tensordot scatter_add"

CUDA_POLICY: dict[str, str] = {
    **{op: LOWER for op in _LOWER_OPS.split()},
    **{op: FP32 for op in _FP32_OPS.split()},
    **{op: FP32_OPT_DTYPE for op in _FP32_OPT_DTYPE_OPS.split()},
    "norm.Scalar": FP32_APPEND_DTYPE, "norm.ScalarOpt_dim": FP32_APPEND_DTYPE,
    **{op: PROMOTE for op in _PROMOTE_OPS.split()},
    "binary_cross_entropy": BANNED,
}
# Not in the source version read; their policy follows their siblings': rms_norm is a norm (fp32, as
# layer_norm), linalg_matrix_sqrth a linalg op (fp32), _cudnn_rnn cuDNN's RNN (low precision, as the
# RNN cells), vdot a dot product (promote, as dot). A GPU test compares the whole table with CUDA.
ASSUMED = frozenset({"rms_norm", "linalg_matrix_sqrth", "_cudnn_rnn", "vdot"})

# Ops CPU autocast also runs in low precision: its own kernels stay (see the module doc).
SHARED_LOWER = frozenset("""conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d.input
conv_transpose3d.input _convolution.deprecated prelu addmm matmul mm linalg_vecdot linear addbmm baddbmm bmm
scaled_dot_product_attention""".split())


def _eligible(t) -> bool:
    """What CUDA autocast casts: floating tensors that are not float64."""
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


def _cast(value, dtype: torch.dtype):
    if _eligible(value) and value.dtype != dtype:
        return value.to(dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _tensors(args, kwargs) -> list[torch.Tensor]:
    flat = [*args, *kwargs.values()]
    out = []
    for v in flat:
        out += [t for t in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(t, torch.Tensor)]
    return out


def _overload(name: str):
    op, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, op), overload or "default")


def _without_autocast():
    return torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU))


def _kernel(name: str, policy: str) -> Callable:
    """An AutocastCPU kernel that casts as AutocastCUDA's kernel for `name` would."""
    op = _overload(name)
    dtype_index = next((i for i, a in enumerate(op._schema.arguments) if a.name == "dtype"), None)

    def kernel(*args, **kwargs):
        low = torch.get_autocast_dtype("cpu")
        with _without_autocast():
            if policy == LOWER:
                return op(*_cast(args, low), **_cast(kwargs, low))
            if policy == FP32:
                return op(*_cast(args, torch.float32), **_cast(kwargs, torch.float32))
            if policy == FP32_OPT_DTYPE:  # an explicit dtype wins; else fp32, when the first input is eligible
                given = kwargs.get("dtype", args[dtype_index] if dtype_index is not None and dtype_index < len(args)
                                   else None)
                if given is None and _eligible(args[0]):
                    if dtype_index is not None and dtype_index < len(args):
                        args = (*args[:dtype_index], torch.float32, *args[dtype_index + 1:])
                    else:
                        kwargs = {**kwargs, "dtype": torch.float32}
                return op(*args, **kwargs)
            if policy == FP32_APPEND_DTYPE:  # norm: redispatch to the overload that takes a dtype
                with_dtype = torch.ops.aten.norm.ScalarOpt_dtype if name == "norm.Scalar" else \
                    torch.ops.aten.norm.ScalarOpt_dim_dtype
                return with_dtype(*args, **kwargs, dtype=torch.float32 if _eligible(args[0]) else args[0].dtype)
            if policy == PROMOTE:
                widest = torch.float32 if any(_eligible(t) and t.dtype == torch.float32
                                              for t in _tensors(args, kwargs)) else low
                return op(*_cast(args, widest), **_cast(kwargs, widest))
            if policy == BANNED:
                raise RuntimeError(f"torch.nn.functional.{name} is unsafe to autocast (CUDA autocast refuses it); "
                                   "use binary_cross_entropy_with_logits")
            raise ValueError(f"unknown autocast policy {policy!r}")

    return kernel


def _aten_ops_with_kernel(key: str) -> set[str]:
    """aten ops (names without the namespace) with a `key` kernel in the installed torch. Other
    libraries' ops (torchvision's roi_align...) keep their own autocast kernels."""
    return {n.removeprefix("aten::") for n in torch._C._dispatch_get_all_op_names()
            if n.startswith("aten::") and torch._C._dispatch_has_kernel_for_dispatch_key(n, key)}


def cpu_autocast_ops() -> set[str]:
    return _aten_ops_with_kernel("AutocastCPU")


def cuda_autocast_ops() -> set[str]:
    return _aten_ops_with_kernel("AutocastCUDA")


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """While entered, `torch.autocast("cpu")` casts as CUDA autocast does (see the module doc)."""
    library = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():  # overriding the CPU's registrations is the point
            warnings.simplefilter("ignore")
            for name, policy in CUDA_POLICY.items():
                if name not in SHARED_LOWER and _has_op(name):
                    library.impl(name, _kernel(name, policy), "AutocastCPU")
            for name in cpu_autocast_ops() - set(CUDA_POLICY) - SHARED_LOWER:
                # an op CPU autocast casts and CUDA's does not: fall through, so that the ops a
                # composite decomposes into meet autocast, as on CUDA (cross_entropy: log_softmax...)
                library.impl(name, torch.library.fallthrough_kernel, "AutocastCPU")
        yield
    finally:
        library._destroy()


def _has_op(name: str) -> bool:
    try:
        _overload(name)
    except (AttributeError, RuntimeError):
        return False
    return True
