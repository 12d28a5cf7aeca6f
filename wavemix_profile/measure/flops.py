"""Count the arithmetic of one forward pass and one training step, per image.

Counting is a table. `FLOP_FORMULAS` maps an aten op to a pure function of its argument shapes
returning FLOPs; it extends the table torch's `FlopCounterMode` already holds (mm, addmm, bmm,
baddbmm, convolution, the CUDA attention kernels), which is the engine that applies both.
`ELEMENTWISE_FLOP_FORMULAS` does the same for elementwise arithmetic, norms, reductions and
pooling, kept in separate fields. `ZERO_COST_OPS` lists the ops that move or allocate data and
do no arithmetic. Every other aten op that runs is reported in `FlopCount.uncounted_ops`, never
silently counted as zero; adding an op is adding an entry.

Conventions (also in `CONVENTION`, stored with every count):
  * 1 MAC (multiply-add) = 2 FLOPs. Matmul/conv-like ops cost 2 FLOPs per multiply-add (bias
    adds ignored, as torch and fvcore do); forward MACs are those FLOPs / 2.
  * FFT: 5 * N * log2(N) real FLOPs per complex transform of length N, times the number of such
    transforms; over several axes this is 5 * numel * log2(product of transformed lengths).
    A real-input (r2c) or real-output (c2r) transform counts half of the complex one.
  * Attention kernels: 2 FLOPs per multiply-add of their matmuls; forward 4*B*H*L*S*E, backward
    10*B*H*L*S*E (it recomputes Q K^T), on CPU as torch counts the CUDA kernels.
  * Convolution backward: each requested gradient (input, weight) costs the forward's FLOPs.
  * Elementwise ops: 1 FLOP per element of the largest tensor the op reads or writes, whatever
    the true per-element cost (a lower bound). Torch's counter and the FLOP figures papers
    quote leave them out, so they stay out of the MAC/FLOP fields and live in the
    `*_elementwise_flops_per_image` fields.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import reduce
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from .fake_log import quiet_fake_errors

aten = torch.ops.aten

FLOPS_PER_MAC = 2
FFT_FLOPS_PER_POINT_AND_LOG2 = 5  # radix-2 Cooley-Tukey: 5 N log2 N real FLOPs per complex length-N FFT
REAL_FFT_FRACTION = 0.5  # a transform with real input or real output does half the complex work

CONVENTION = (
    "1 MAC = 2 FLOPs; matmul/conv/attention: 2 FLOPs per multiply-add, bias ignored; "
    "FFT: 5*N*log2(N) FLOPs per complex length-N transform, real-input/output transforms half; "
    "elementwise/norm/reduction/pooling ops: 1 FLOP per element of the largest tensor, only in "
    "*_elementwise_* fields; train step = forward + scalar-loss backward, no optimizer update; "
    "fvcore_macs: fvcore FlopCountAnalysis in eval(), its 'flop' = 1 MAC, also counts norms and "
    "adaptive pooling; all figures per image (batch totals / batch size)"
)

Formula = Callable[..., int]  # (*argument shapes, out_shape=..., **kwargs) -> FLOPs


# --- formulas: pure shape arithmetic (tensors arrive as torch.Size) -----------------------------

def _fft_flops(shape, dims, fraction: float) -> int:
    transformed = math.prod(shape[d] for d in dims)
    if transformed <= 1:
        return 0
    return round(fraction * FFT_FLOPS_PER_POINT_AND_LOG2 * math.prod(shape) * math.log2(transformed))


def fft_c2c_flops(self_shape, dim, normalization, forward, *, out_shape=None) -> int:
    """Complex-to-complex FFT over `dim` of a complex tensor: 5 * numel * log2(prod of lengths)."""
    return _fft_flops(self_shape, dim, 1.0)


def fft_r2c_flops(self_shape, dim, normalization, onesided, *, out_shape=None) -> int:
    """Real-to-complex FFT: half the complex transform of the real input's shape."""
    return _fft_flops(self_shape, dim, REAL_FFT_FRACTION)


def fft_c2r_flops(self_shape, dim, normalization, last_dim_size, *, out_shape=None) -> int:
    """Complex-to-real inverse FFT: half the complex transform of the real output's shape."""
    return _fft_flops(out_shape, dim, REAL_FFT_FRACTION)


def conv_backward_flops(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, *, out_shape=None) -> int:
    """Convolution backward: each forward multiply-add has one counterpart in the input gradient
    and one in the weight gradient, so each requested gradient costs the forward's FLOPs.

    Forward MACs = batch * prod(weight shape) * prod(spatial size of the larger side: the output,
    or the input of a transposed conv); the weight shape already holds in_channels / groups.
    Replaces torch's entry, which counts a grouped (e.g. depthwise) convolution's weight
    gradient `groups` times over. Bias gradients (a reduction) are ignored, like forward biases.
    """
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = FLOPS_PER_MAC * x_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def _attention_dims(query_shape, key_shape, value_shape) -> tuple[int, int, int, int, int, int]:
    batch, heads, q_len, head_dim = query_shape  # key/value heads may be fewer (GQA): broadcast
    kv_len, value_dim = key_shape[-2], value_shape[-1]
    return batch, heads, q_len, kv_len, head_dim, value_dim


def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """CPU fused attention forward: Q K^T and P V, 2*B*H*L*S*(E + Ev) (= 4*B*H*L*S*E)."""
    b, h, l, s, e, ev = _attention_dims(query_shape, key_shape, value_shape)
    return FLOPS_PER_MAC * b * h * l * s * (e + ev)


def cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                 out_shape=None, **kwargs) -> int:
    """CPU fused attention backward, as the kernel runs it: 5 matmuls, 2*B*H*L*S*(3E + 2Ev).

    The kernel keeps only the log-sum-exp, so it recomputes Q K^T, then dV = P^T dO,
    dP = dO V^T, dQ = dS K and dK = dS^T Q: 2.5x the forward when E = Ev, the same formula
    torch uses for the CUDA flash/efficient backward, so CPU and GPU counts agree.
    """
    b, h, l, s, e, ev = _attention_dims(query_shape, key_shape, value_shape)
    return FLOPS_PER_MAC * b * h * l * s * (3 * e + 2 * ev)


def mv_flops(matrix_shape, vector_shape, *args, out_shape=None, **kwargs) -> int:
    """Matrix (m, n) times vector (n,): 2*m*n."""
    return FLOPS_PER_MAC * math.prod(matrix_shape)


def addmv_flops(self_shape, matrix_shape, vector_shape, *args, out_shape=None, **kwargs) -> int:
    return mv_flops(matrix_shape, vector_shape)


def dot_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """Dot product of two length-n vectors: 2*n."""
    return FLOPS_PER_MAC * math.prod(a_shape)


def per_element_flops(*args, out_shape=None, **kwargs) -> int:
    """1 FLOP per element of the largest tensor the op reads or writes."""
    return max((math.prod(s) for s in _sizes((args, kwargs, out_shape))), default=0)


def _sizes(tree) -> Iterator[torch.Size]:
    if isinstance(tree, torch.Size):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _sizes(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _sizes(item)


# --- the tables -------------------------------------------------------------------------------

def _ops(names: str) -> list:
    """Op packets for whitespace-separated aten names, with in-place `name_` variants; names this
    torch build lacks are skipped (the tables serve torch >= 2.4)."""
    found = []
    for name in names.split():
        found += [getattr(aten, n) for n in (name, name + "_") if hasattr(aten, n)]
    return found


# Counted in forward/train-step FLOPs, on top of torch's own table (these entries extend it and,
# for convolution_backward, replace its formula).
FLOP_FORMULAS: dict[Any, Formula] = {
    aten._fft_c2c: fft_c2c_flops,
    aten._fft_r2c: fft_r2c_flops,
    aten._fft_c2r: fft_c2r_flops,
    aten.convolution_backward: conv_backward_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_attention_backward_flops,
    aten.mv: mv_flops,
    aten.addmv: addmv_flops,
    aten.dot: dot_flops,
}

# Counted only in the *_elementwise_* fields: real arithmetic that torch, fvcore and the papers'
# FLOP figures leave out (so the MAC fields stay comparable with theirs). index_put is here, not
# with the copies, because autograd's backward of indexing is an accumulating (adding) index_put.
ELEMENTWISE_FLOP_FORMULAS: dict[Any, Formula] = dict.fromkeys(_ops("""
    add sub rsub mul div neg reciprocal pow sqrt rsqrt exp log log1p abs sign sgn erf sin cos
    clamp clamp_min clamp_max maximum minimum where lerp addcmul addcdiv masked_fill
    eq ne lt le gt ge logical_not logical_and logical_or floor ceil round remainder fmod
    relu threshold threshold_backward gelu gelu_backward silu silu_backward sigmoid
    sigmoid_backward tanh tanh_backward hardtanh hardtanh_backward hardswish hardswish_backward
    hardsigmoid hardsigmoid_backward leaky_relu leaky_relu_backward elu elu_backward mish
    mish_backward softplus softplus_backward glu glu_backward
    _softmax _safe_softmax _softmax_backward_data _log_softmax _log_softmax_backward_data
    native_batch_norm native_batch_norm_backward _native_batch_norm_legit
    _native_batch_norm_legit_no_training _batch_norm_with_update _batch_norm_no_update
    batch_norm_backward cudnn_batch_norm cudnn_batch_norm_backward miopen_batch_norm
    miopen_batch_norm_backward native_layer_norm native_layer_norm_backward native_group_norm
    native_group_norm_backward _fused_rms_norm _fused_rms_norm_backward
    sum mean prod amax amin max min var var_mean std std_mean linalg_vector_norm norm logsumexp
    cumsum cumprod
    max_pool2d_with_indices max_pool2d_with_indices_backward avg_pool2d avg_pool2d_backward
    _adaptive_avg_pool2d _adaptive_avg_pool2d_backward adaptive_max_pool2d
    adaptive_max_pool2d_backward upsample_nearest2d upsample_nearest2d_backward
    upsample_bilinear2d upsample_bilinear2d_backward col2im
    native_dropout native_dropout_backward bernoulli
    index_put _index_put_impl index_add scatter_add embedding_dense_backward
"""), per_element_flops)

# No arithmetic: views, copies, layout changes, indexing, allocation and random fills.
ZERO_COST_OPS: frozenset = frozenset(_ops("""
    view _unsafe_view reshape _reshape_alias as_strided expand permute transpose t unsqueeze
    squeeze unbind split split_with_sizes chunk narrow slice select diagonal unfold alias detach
    lift_fresh lift_fresh_copy clone contiguous copy _copy_from _to_copy cat stack flip roll repeat
    constant_pad_nd slice_backward select_backward index index_select gather embedding im2col
    pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle
    view_as_real view_as_complex real imag _conj resolve_conj resolve_neg _local_scalar_dense
    _linalg_check_errors
    empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones
    ones_like new_ones full full_like new_full fill zero scalar_tensor arange linspace eye
    rand randn randint normal uniform set_ resize_
""")) | {torch.ops.prim.device}  # asked of fake tensors (count_flops on_fakes=True): a query, no arithmetic


# --- the result -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlopCount:
    """Per-image operation counts (batch totals / batch size); conventions in `convention`.

    forward_macs_per_image: multiply-adds of matmul/conv/attention ops (+ FFT FLOPs / 2) in one
        forward pass; elementwise ops excluded, as in torch's counter, fvcore and papers.
    forward_flops_per_image: the same work in FLOPs (2 per MAC; FFTs at 5 N log2 N); elementwise
        ops are ignored here too, see forward_elementwise_flops_per_image.
    train_step_flops_per_image: forward + backward of a scalar loss (sum of the outputs), same
        convention; None when counted with train=False.
    forward/train_step_elementwise_flops_per_image: 1 FLOP per element of the largest tensor of
        each elementwise, norm, reduction or pooling op.
    uncounted_ops: aten ops that ran and appear in no table ("aten.name"), sorted.
    fvcore_macs_per_image: fvcore FlopCountAnalysis total in eval() (its "flop" is one MAC; it
        also counts batch norm, layer/group norm and adaptive pooling); None if not asked for or
        its trace failed (then fvcore_error says why).
    fvcore_unsupported_ops: ops fvcore skipped, as "aten::name xCALLS", sorted.
    """

    forward_macs_per_image: int
    forward_flops_per_image: int
    train_step_flops_per_image: Optional[int]
    forward_elementwise_flops_per_image: int
    train_step_elementwise_flops_per_image: Optional[int]
    uncounted_ops: tuple[str, ...]
    fvcore_macs_per_image: Optional[int]
    fvcore_unsupported_ops: tuple[str, ...]
    fvcore_error: Optional[str]
    convention: str = CONVENTION


@dataclass(frozen=True)
class _Tally:
    """Batch totals of one counted phase."""

    flops: int
    elementwise_flops: int
    uncounted_ops: frozenset


class _OpRecorder(TorchDispatchMode):
    """Sits below FlopCounterMode, so it sees every aten op that actually runs, after the
    counter's decompositions; applies the elementwise table and remembers what ran."""

    def __init__(self):
        super().__init__()
        self.ran: set = set()
        self.elementwise_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        self.ran.add(packet)
        formula = ELEMENTWISE_FLOP_FORMULAS.get(packet)
        if formula is not None:
            args, kwargs, out_shape = tree_map(_shape, (args, kwargs, out))
            self.elementwise_flops += formula(*args, out_shape=out_shape, **kwargs)
        return out


def flop_counter_mode(*, depth: int = 2) -> FlopCounterMode:
    """torch's FlopCounterMode with this module's formulas, for per-module breakdowns (MAC-like
    ops only, 2 FLOPs per multiply-add)."""
    return FlopCounterMode(display=False, depth=depth, custom_mapping=dict(FLOP_FORMULAS))


def _shape(value):
    return value.shape if isinstance(value, torch.Tensor) else value


def _tally(run: Callable[[], Any]) -> tuple[Any, _Tally]:
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    recorder = _OpRecorder()
    with recorder, counter:  # entered last, the counter sees each op first
        result = run()
    counted = set(counter.get_flop_counts().get("Global", {}))
    uncounted = recorder.ran - counted - ELEMENTWISE_FLOP_FORMULAS.keys() - ZERO_COST_OPS
    return result, _Tally(counter.get_total_flops(), recorder.elementwise_flops, frozenset(uncounted))


@contextmanager
def _state_kept(model: nn.Module, inputs: torch.Tensor):
    """Counting must not change the model or the inputs: restore modes, buffers (batch-norm
    statistics) and the gradients of parameters and of a leaf input."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(t, t.grad) for t in [*model.parameters(), *([inputs] if inputs.is_leaf else [])]]
    for tensor, _ in grads:
        tensor.grad = None  # backward then assigns gradients instead of adding to old ones
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for param, grad in grads:
            param.grad = grad


def _loss_backward(output) -> None:
    """Backward of sum(out.float().sum()) over the outputs that need grad; nothing if none does."""
    leaves = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
    if leaves:
        sums = (t.real.float().sum() if t.is_complex() else t.float().sum() for t in leaves)
        reduce(torch.add, sums).backward()


def _fake_copy(model: nn.Module, inputs: torch.Tensor, mode) -> tuple[nn.Module, torch.Tensor]:
    """A copy of the model whose parameters and buffers are fake tensors of the same shapes, dtypes and
    ties (no weight is copied), and a fake copy of the inputs."""
    memo: dict = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = mode.from_tensor(b)
    fake_inputs = mode.from_tensor(inputs)
    if inputs.requires_grad:
        fake_inputs.requires_grad_(True)
    return copy.deepcopy(model, memo), fake_inputs


def _tallies(model: nn.Module, inputs: torch.Tensor, train: bool) -> tuple[_Tally, Optional[_Tally]]:
    """The forward's tally and (train) the scalar loss backward's, the model left as it was."""
    with _state_kept(model, inputs):
        if train:
            model.train()
            with torch.enable_grad():
                output, forward = _tally(lambda: model(inputs))
                _, backward = _tally(lambda: _loss_backward(output))
            return forward, backward
        model.eval()
        with torch.no_grad():
            _, forward = _tally(lambda: model(inputs))
        return forward, None


def _fake_tallies(model: nn.Module, inputs: torch.Tensor, train: bool) -> Optional[tuple[_Tally, Optional[_Tally]]]:
    """_tallies run on fake tensors (FakeTensorMode: shapes and dtypes, no arithmetic), or None where the
    model cannot run on them (an op that reads values, a module that cannot be copied)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    try:
        mode = FakeTensorMode(allow_non_fake_inputs=True)  # tensors kept as plain attributes join in
        with quiet_fake_errors():
            fake_model, fake_inputs = _fake_copy(model, inputs, mode)
        with quiet_fake_errors(), mode:
            return _tallies(fake_model, fake_inputs, train)
    except Exception:  # noqa: BLE001 - the count on real tensors says what is wrong, if anything is
        return None


def count_flops(model: nn.Module, inputs: torch.Tensor, *, train: bool = True, strict: bool = False,
                with_fvcore: bool = True, on_fakes: bool = False) -> FlopCount:
    """Count one forward pass and (train=True) one training step of `model` on `inputs`.

    train=True runs the model in train() mode, counts its forward, then counts the backward of
    the scalar loss sum(out.float().sum()) over its outputs (no optimizer update). train=False
    counts one forward in eval() under no_grad and leaves the train-step fields None. The
    model's modes, buffers and gradients are restored afterwards. All figures are per image:
    batch totals divided by inputs.shape[0] (rounded). Units and conventions: see FlopCount and
    CONVENTION. strict=True raises ValueError naming any aten op that ran without a formula.
    with_fvcore=True also runs fvcore's FlopCountAnalysis (eval mode) for comparison.
    on_fakes=True counts on a copy of the model and inputs made of fake tensors: the same ops on the
    same shapes without their arithmetic, so the same count in a fraction of the time; a model that
    cannot run on them (one that reads values) is counted on the real ones. fvcore always traces
    the real model.
    """
    batch = inputs.shape[0]
    forward, backward = (on_fakes and _fake_tallies(model, inputs, train)) or _tallies(model, inputs, train)
    ran_uncounted = forward.uncounted_ops | (backward.uncounted_ops if backward else frozenset())
    uncounted = tuple(sorted(str(op) for op in ran_uncounted))
    if strict and uncounted:
        raise ValueError(f"no FLOP formula for aten ops that ran: {', '.join(uncounted)}; add them to "
                         "FLOP_FORMULAS, ELEMENTWISE_FLOP_FORMULAS or ZERO_COST_OPS in flops.py")
    fvcore_macs, fvcore_unsupported, fvcore_error = (
        _fvcore_count(model, inputs) if with_fvcore else (None, (), None))

    def per_image(total: int, unit: int = 1) -> int:
        return round(Fraction(total, batch * unit))  # exact: totals can pass 2**53

    return FlopCount(
        forward_macs_per_image=per_image(forward.flops, FLOPS_PER_MAC),
        forward_flops_per_image=per_image(forward.flops),
        train_step_flops_per_image=per_image(forward.flops + backward.flops) if backward else None,
        forward_elementwise_flops_per_image=per_image(forward.elementwise_flops),
        train_step_elementwise_flops_per_image=(
            per_image(forward.elementwise_flops + backward.elementwise_flops) if backward else None),
        uncounted_ops=uncounted,
        fvcore_macs_per_image=per_image(fvcore_macs) if fvcore_macs is not None else None,
        fvcore_unsupported_ops=fvcore_unsupported,
        fvcore_error=fvcore_error,
    )


def import_fvcore():
    """fvcore.nn, or an ImportError that says how to do without it."""
    try:
        with warnings.catch_warnings():
            # fvcore.nn jit-scripts a loss function at import; the deprecation is fvcore's to fix.
            warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated",
                                    category=FutureWarning)
            import fvcore.nn
    except ImportError as err:
        raise ImportError("with_fvcore=True needs fvcore (pip install 'fvcore>=0.1.5'); "
                          "pass with_fvcore=False to count without it") from err
    return fvcore.nn


def _fvcore_count(model: nn.Module, inputs: torch.Tensor
                  ) -> tuple[Optional[int], tuple[str, ...], Optional[str]]:
    """fvcore's total (one multiply-add = one 'flop'), its unsupported ops, or why it failed."""
    FlopCountAnalysis = import_fvcore().FlopCountAnalysis
    with _state_kept(model, inputs), torch.no_grad():
        model.eval()
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        try:
            total = analysis.total()
            unsupported: Counter = analysis.unsupported_ops()
        except Exception as err:  # a model jit.trace cannot follow must not lose our own count
            return None, (), f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
    return int(total), tuple(f"{name} x{calls}" for name, calls in sorted(unsupported.items())), None
