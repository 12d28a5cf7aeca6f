"""The training step and inference pass every measurement uses (the paper's section 4.3).

Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01), automatic mixed precision
(fp16 autocast with GradScaler on CUDA by default; bf16 or off on request), cross-entropy on
random labels. Inference runs in eval mode under torch.inference_mode with the same autocast.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import BadInputError

AMP_MODES = ("fp16", "bf16", "off")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_amp(amp: str) -> str:
    if amp not in AMP_MODES:
        raise BadInputError(f"unknown AMP mode {amp!r}; accepted: {', '.join(AMP_MODES)}")
    return amp


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

    @classmethod
    def of(cls, settings) -> "StepConfig":
        """The step a measurement request (results.Settings) asks for."""
        return cls(device=torch.device(settings.device), amp=settings.amp, channels_last=settings.channels_last,
                   compile=settings.compile, num_classes=settings.num_classes,
                   inference=settings.inference or "inference_mode")


class TrainStep:
    """One model with its optimizer and scaler, ready to run training steps and inference passes."""

    def __init__(self, model: nn.Module, config: StepConfig):
        self.config = config
        self.model = _place(model, config)
        # foreach=True is what Adam picks on CUDA by default; asking for it everywhere makes the
        # CPU estimate hold the same step temporaries (a copy of every gradient at once) as a GPU.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999),
                                          eps=1e-8, weight_decay=0.01, foreach=True)
        use_scaler = config.amp == "fp16" and config.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(config.device.type, enabled=use_scaler)
        self.forward = torch.compile(self.model) if config.compile else self.model

    def batch(self, size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random images and labels (the paper trains without augmentation; content is irrelevant)."""
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        x = torch.randn(size, 3, image_size, image_size, device=self.config.device).contiguous(memory_format=fmt)
        y = torch.randint(0, self.config.num_classes, (size,), device=self.config.device)
        return x, y

    def autocast(self, amp: str | None = None):
        amp = self.config.amp if amp is None else amp
        if amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.config.device.type, dtype=_DTYPES[amp])

    def train(self, x: torch.Tensor, y: torch.Tensor, *, amp: str | None = None,
              update: Callable[[], None] | None = None) -> None:
        """One step: forward, loss, backward, optimizer step, gradients released. `update`, where
        given, stands in for the optimizer step (update()): the CPU estimate replays a recorded one."""
        self.model.train()
        with self.autocast(amp):
            logits = self.forward(x)
            check_logits(logits, x.shape[0], self.config.num_classes)
            loss = F.cross_entropy(logits, y)
        self.scaler.scale(loss).backward()
        (update or self.update)()
        self.optimizer.zero_grad(set_to_none=True)

    def update(self) -> None:
        """The optimizer step, through the scaler (which skips a step whose gradients overflowed)."""
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


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return _unique_bytes([v for state in optimizer.state.values() for v in state.values()
                          if isinstance(v, torch.Tensor)])


def _unique_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total
