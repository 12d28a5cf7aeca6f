"""The Python entry point: measure one model (a zoo name, a torchvision:/timm: spec, a factory, or an
nn.Module instance).

    >>> from wavemix_profile import measure_model
    >>> result = measure_model("WaveMix-128/7", image_size=32, skip=("throughput",))
    >>> result.memory.peak_train_bytes, result.max_batch_train.max_batch

The Result's field names are those of results.jsonl, `--json` and the columns of results.csv
(docs/fields.md, rendered by render.fields.render_field_reference).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch.nn as nn

from .core.results import Result, Settings


def measure_model(model: str | Callable[..., nn.Module] | nn.Module, *, image_size: int = 32,
                  isolated: Optional[bool] = None, **settings) -> Result:
    """Measure `model` at `image_size` px; keyword arguments are Settings fields (batch_size,
    device, amp, optimizer, num_classes, target_gpu, memory_budget_bytes, skip, ...), with the CLI's
    defaults: on the CPU the named card's memory as the max-batch budget.

    `model` is one of:
      - a spec: a zoo name ("WaveMix-128/7"), "torchvision:NAME", "timm:NAME" or "python:MODULE:FACTORY";
        num_classes defaults to the spec's own class count (sources.default_num_classes);
      - a factory, called as factory(num_classes=..., image_size=...); num_classes defaults to 100;
      - an nn.Module instance, measured as it is (each measurement works on its own copy);
        num_classes defaults to the width of its output.

    `isolated` says where the measurement runs. None (the default) measures a spec or a factory in a
    fresh process, as the CLI does, and an instance in this process, since an instance cannot be sent
    to another process. isolated=True needs a spec or a factory importable by name; with an instance
    it raises BadInputError. isolated=False measures here and takes any factory, a local function or
    a lambda included (notebooks). Bad input raises before anything runs."""
    from .core.errors import BadInputError
    from .run.isolation import run_isolated, check_request
    from .measure.measure import default_device, measure
    from .sources.sources import default_num_classes, instance_num_classes, local_source, spec_for_factory

    defaults = {"device": default_device(), **settings}
    if isinstance(model, nn.Module):
        if isolated:
            raise BadInputError("isolated=True cannot take a model instance, which cannot be sent to a fresh "
                                "process: pass a factory or a python:MODULE:FACTORY spec, or leave isolated "
                                "unset to measure the instance in this process")
        defaults.setdefault("num_classes", instance_num_classes(model, image_size))
        source = local_source(model)
        return measure(Settings(model=source.spec, image_size=image_size, **defaults), source=source)
    if isolated is None:
        isolated = True
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
