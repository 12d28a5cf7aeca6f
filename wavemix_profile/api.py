"""The Python entry point: measure one model (a zoo name, a torchvision:/timm: spec, or a factory).

    >>> from wavemix_profile import measure_model
    >>> result = measure_model("WaveMix-128/7", image_size=32, skip=("throughput",))
    >>> result.memory.peak_train_bytes, result.max_batch_train.max_batch
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .results import Result, Settings


def measure_model(model: str | Callable[..., nn.Module] | nn.Module, *, image_size: int = 32, isolated: bool = True,
                  **settings) -> Result:
    """Measure `model` at `image_size` px; keyword arguments are Settings fields (batch_size,
    device, amp, optimizer, num_classes, target_gpu, memory_budget_bytes, skip, ...), with the CLI's
    defaults: a spec's own class count (sources.default_num_classes), and on the CPU the named card's
    memory as the max-batch budget. `model` is a spec (a zoo name, torchvision:/timm:/
    python:), a factory called as factory(num_classes=..., image_size=...), or, in this process only,
    an nn.Module (each measurement works on its own copy). isolated=True (the default) measures in a
    fresh process, as the CLI does: that needs a spec or a factory importable by name. isolated=False
    measures here and takes any factory, a local function or a lambda included (notebooks). Bad
    input raises before anything runs."""
    from .errors import BadInputError
    from .isolation import run_isolated
    from .measure import check_request, default_device, measure
    from .sources import default_num_classes, local_source, spec_for_factory

    defaults = {"device": default_device(), **settings}
    if isinstance(model, str):
        defaults.setdefault("num_classes", default_num_classes(model))
        request = Settings(model=model, image_size=image_size, **defaults)
        if not isolated:
            return measure(request)
        check_request(request)
        return run_isolated(request)
    if isolated:
        request = Settings(model=spec_for_factory(model), image_size=image_size, **defaults)
        check_request(request)
        return run_isolated(request)
    try:  # an importable factory keeps its spec, so the CLI can measure the stored request again
        spec = spec_for_factory(model)
    except BadInputError:
        source = local_source(model)
        return measure(Settings(model=source.spec, image_size=image_size, **defaults), source=source)
    return measure(Settings(model=spec, image_size=image_size, **defaults))
