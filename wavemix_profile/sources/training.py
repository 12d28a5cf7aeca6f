"""The training step and inference pass every measurement uses (by default the paper's section 4.3).

The optimizer is the user's (OPTIMIZERS; the paper's Adam by default), with automatic mixed
precision (fp16 autocast with GradScaler on CUDA by default; bf16 or off on request) and
cross-entropy on random labels. Inference runs in eval mode under torch.inference_mode with the same
autocast.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import BadInputError
from ..core.results import DEFAULT_OPTIMIZER

AMP_MODES = ("fp16", "bf16", "off")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class OptimizerRecipe:
    """An optimizer as a training run uses it. `state` names the tensors it keeps on the device for each
    trainable parameter, each of the parameter's shape and dtype (its step counts stay on the host:
    without `capturable` or `fused`, torch keeps them there); `make` builds it over the parameters,
    with foreach=True, what torch picks on CUDA by default, so the CPU estimate holds the same step
    temporaries as a GPU (a copy of every gradient at once where weight decay is added to them)."""

    name: str
    description: str
    state: tuple[str, ...]
    make: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    steps: bool = True      # False: forward and backward only, no optimizer step

    def state_bytes(self, params: Iterable[torch.Tensor]) -> int:
        """Bytes of the state this optimizer keeps on the device for `params` (trainable ones only)."""
        return len(self.state) * sum(p.numel() * p.element_size() for p in params if p.requires_grad)


OPTIMIZERS: dict[str, OptimizerRecipe] = {r.name: r for r in (
    OptimizerRecipe("adam", "Adam, lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01 (the paper's)",
                    ("exp_avg", "exp_avg_sq"),
                    lambda ps: torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                                                foreach=True)),
    OptimizerRecipe("adamw", "AdamW, lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.05 (DeiT's and timm's "
                             "transformer recipes)", ("exp_avg", "exp_avg_sq"),
                    lambda ps: torch.optim.AdamW(ps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
                                                 foreach=True)),
    OptimizerRecipe("sgd", "SGD without momentum, lr 0.1, weight decay 1e-4", (),
                    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.0, weight_decay=1e-4, foreach=True)),
    OptimizerRecipe("sgd-momentum", "SGD, momentum 0.9, lr 0.1, weight decay 1e-4 (torchvision's reference "
                                    "recipe; timm's 'sgd' keeps the same momentum buffer)", ("momentum_buffer",),
                    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True)),
    # Never stepped: an optimizer over the parameters only so that gradients are released as with the others.
    OptimizerRecipe("none", "no optimizer step: forward and backward only (gradients made, then released)", (),
                    lambda ps: torch.optim.SGD(ps, lr=0.0), steps=False),
)}


def check_amp(amp: str) -> str:
    if amp not in AMP_MODES:
        raise BadInputError(f"unknown AMP mode {amp!r}; accepted: {', '.join(AMP_MODES)}")
    return amp


def optimizer_recipe(name: str) -> OptimizerRecipe:
    """The recipe of an optimizer name; a BadInputError naming the accepted ones otherwise."""
    if name not in OPTIMIZERS:
        raise BadInputError(f"unknown optimizer {name!r}; accepted: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def timed_precision(amp: str, device: torch.device) -> str:
    """The autocast dtype actually run: CPU fp16 kernels are an order of magnitude slower than
    bf16 and unrepresentative of anything, so CPU timing uses bf16 where fp16 was asked."""
    if amp == "fp16" and device.type == "cpu":
        return "bf16"
    return "fp32" if amp == "off" else amp


@dataclass(frozen=True)
class StepConfig:
    device: torch.device
    amp: str = "fp16"            # autocast dtype, or "off"
    channels_last: bool = False
    compile: bool = False
    num_classes: int = 100
    inference: str = "inference_mode"   # or "autograd": see results.Settings.inference
    optimizer: str = DEFAULT_OPTIMIZER  # a key of OPTIMIZERS
    keep_grads: bool = False            # zero_grad(set_to_none=False): see results.Settings.keep_grads

    @classmethod
    def of(cls, settings) -> "StepConfig":
        """The step a measurement request (results.Settings) asks for."""
        return cls(device=torch.device(settings.device), amp=settings.amp, channels_last=settings.channels_last,
                   compile=settings.compile, num_classes=settings.num_classes,
                   inference=settings.inference or "inference_mode", optimizer=settings.optimizer,
                   keep_grads=settings.keep_grads)


class TrainStep:
    """One model with its optimizer and scaler, ready to run training steps and inference passes."""

    def __init__(self, model: nn.Module, config: StepConfig):
        self.config = config
        self.model = _place(model, config)
        self.recipe = optimizer_recipe(config.optimizer)
        self.optimizer = self.recipe.make(self.model.parameters())
        use_scaler = config.amp == "fp16" and config.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(config.device.type, enabled=use_scaler)
        self.forward = torch.compile(self.model) if config.compile else self.model

    def batch(self, size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random images and labels (the paper trains without augmentation; content is irrelevant)."""
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        x = torch.randn(size, 3, image_size, image_size, device=self.config.device).contiguous(memory_format=fmt)
        y = torch.randint(0, self.config.num_classes, (size,), device=self.config.device)
        return x, y

    def kept_grads(self) -> list[torch.Tensor]:
        """The gradients a step leaves allocated for the next (keep_grads), in parameter order; none otherwise."""
        if not self.config.keep_grads:
            return []
        return [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    def optimizer_state(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """The optimizer's state on the device as (parameter, tensor), in parameter order and the recipe's
        order of names: what its first step makes. The step counts it keeps on the host are left out."""
        state = self.optimizer.state
        return [(p, state[p][name]) for group in self.optimizer.param_groups for p in group["params"]
                for name in self.recipe.state if name in state.get(p, {})]

    def autocast(self, amp: str | None = None):
        amp = self.config.amp if amp is None else amp
        if amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.config.device.type, dtype=_DTYPES[amp])

    def train(self, x: torch.Tensor, y: torch.Tensor, *, amp: str | None = None,
              update: Callable[[], None] | None = None) -> None:
        """One step: forward, loss, backward, optimizer step, gradients released (or zeroed in place
        with keep_grads). `update`, where given, stands in for the optimizer step (update()): the CPU
        estimate replays a recorded one."""
        self.model.train()
        with self.autocast(amp):
            logits = self.forward(x)
            check_logits(logits, x.shape[0], self.config.num_classes)
            loss = F.cross_entropy(logits, y)
        self.scaler.scale(loss).backward()
        (update or self.update)()
        self.optimizer.zero_grad(set_to_none=not self.config.keep_grads)

    def update(self) -> None:
        """The optimizer step, through the scaler (which skips a step whose gradients overflowed);
        nothing for the "none" recipe."""
        if not self.recipe.steps:
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def infer(self, x: torch.Tensor, *, amp: str | None = None) -> torch.Tensor:
        """One pass in eval mode: under torch.inference_mode, or ("autograd") recording the graph, so
        that what backward would need stays alive until the logits are dropped."""
        self.model.eval()
        recording = self.config.inference == "autograd"
        with torch.enable_grad() if recording else torch.inference_mode(), self.autocast(amp):
            logits = self.forward(x)
        check_logits(logits, x.shape[0], self.config.num_classes)
        return logits


def check_logits(output, batch: int, num_classes: int) -> None:
    """Every stage measures a classifier: its output must be one tensor of (batch, num_classes) logits."""
    if isinstance(output, torch.Tensor) and tuple(output.shape) == (batch, num_classes):
        return
    got = f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else f"a {type(output).__name__}"
    raise ValueError(f"model output is {got}; expected logits of shape (batch, num_classes) = ({batch}, {num_classes})")


def _place(model: nn.Module, config: StepConfig) -> nn.Module:
    """Move to the device and memory format by assigning .data, which, unlike Module.to, also works
    on the fake tensors of the CPU memory estimate (Module.to swaps them, which fake tensors refuse)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            fmt = torch.channels_last if config.channels_last and t.dim() == 4 else torch.contiguous_format
            if t.device != config.device or not t.is_contiguous(memory_format=fmt):
                t.data = t.data.to(config.device).contiguous(memory_format=fmt)
    return model


def param_bytes(model: nn.Module) -> int:
    return _unique_bytes(list(model.parameters()) + list(model.buffers()))


def optimizer_state_bytes(step: TrainStep) -> int:
    """Bytes of the optimizer's state on the device (TrainStep.optimizer_state)."""
    return _unique_bytes([t for _, t in step.optimizer_state()])


def _unique_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total
