"""The Python entry point: measure one model (a zoo name, a torchvision:/timm: spec, or a factory).

    >>> from wavemix_profile import measure_model
    >>> result = measure_model("WaveMix-128/7", image_size=32, skip=("throughput",))
    >>> result.memory.peak_train_bytes, result.max_batch_train.max_batch
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .results import Result, Settings


def measure_model(model: str | Callable[..., nn.Module], *, image_size: int = 32, isolated: bool = True,
                  **settings) -> Result:
    """Measure `model` at `image_size` px; keyword arguments are Settings fields (batch_size,
    device, amp, memory_budget_bytes, skip, ...). A factory is called as
    factory(num_classes=..., image_size=...) and must be importable by name when `isolated`
    (the default: a fresh process, as the CLI does). Bad input raises before anything runs."""
    from .isolation import run_isolated
    from .measure import default_device, measure, validate
    from .sources import spec_for_factory

    spec = model if isinstance(model, str) else spec_for_factory(model)
    request = Settings(model=spec, image_size=image_size, **{"device": default_device(), **settings})
    validate(request)
    return run_isolated(request) if isolated else measure(request)
