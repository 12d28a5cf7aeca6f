"""Where a model comes from: the zoo, torchvision, timm, or a user's Python factory.

A spec is a string so that a child process can rebuild the model from it:
  "WaveMix-128/7"              a registry name (the paper's notation)
  "torchvision:resnet50"       anything torchvision.models.get_model builds
  "timm:convnext_atto"         anything timm.create_model builds (optional extra: wavemix-profile[timm])
  "python:pkg.module:factory"  factory(num_classes=..., image_size=...) -> nn.Module
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from .errors import BadInputError
from .models import get_entry

PREFIXES = ("torchvision:", "timm:", "python:")


@dataclass(frozen=True)
class ModelSource:
    spec: str          # as stored in Settings.model
    display_name: str
    family: str | None
    build: Callable[..., nn.Module]   # build(num_classes=..., image_size=...)


def spec_for_factory(factory: Callable[..., nn.Module]) -> str:
    """The spec of an importable module-level factory, so a child process can rebuild it."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise BadInputError(f"model factory {factory!r} must be a module-level function importable by name "
                            "(not a lambda, a local function or one defined in __main__)")
    return f"python:{module}:{qualname}"


def resolve_source(spec: str | Callable[..., nn.Module]) -> ModelSource:
    """Turn a spec (or a factory callable) into something that builds the model."""
    if callable(spec):
        spec = spec_for_factory(spec)
    if spec.startswith("torchvision:"):
        return _torchvision(spec)
    if spec.startswith("timm:"):
        return _timm(spec)
    if spec.startswith("python:"):
        return _python(spec)
    entry = get_entry(spec)
    return ModelSource(spec=entry.name, display_name=entry.name, family=entry.family, build=entry.build)


def _named(spec: str, library: str, known: list[str], make: Callable[[str, int], nn.Module]) -> ModelSource:
    """A model a library builds by name; unknown names fail with close matches."""
    name = spec.split(":", 1)[1]
    if name not in known:
        close = ", ".join(difflib.get_close_matches(name, known, n=3)) or "none"
        raise BadInputError(f"unknown {library} model {name!r}; close matches: {close}")

    def build(*, num_classes: int, image_size: int) -> nn.Module:
        return make(name, num_classes)

    return ModelSource(spec=spec, display_name=spec, family=None, build=build)


def _torchvision(spec: str) -> ModelSource:
    import torchvision.models as tvm
    return _named(spec, "torchvision classification", tvm.list_models(module=tvm),
                  lambda name, classes: tvm.get_model(name, weights=None, num_classes=classes))


def _timm(spec: str) -> ModelSource:
    try:
        import timm
    except ImportError:
        raise BadInputError(f"{spec} needs timm, which is not installed; "
                            "install the extra: pip install 'wavemix-profile[timm]'") from None
    return _named(spec, "timm", timm.list_models(),
                  lambda name, classes: timm.create_model(name, pretrained=False, num_classes=classes))


def _python(spec: str) -> ModelSource:
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts[1:]):
        raise BadInputError(f"bad python model spec {spec!r}; use python:MODULE:FACTORY")
    _, module_name, qualname = parts
    try:
        obj = importlib.import_module(module_name)
        for attr in qualname.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise BadInputError(f"cannot import model factory {spec!r}: {exc}") from None

    def build(*, num_classes: int, image_size: int) -> nn.Module:
        return obj(num_classes=num_classes, image_size=image_size)

    return ModelSource(spec=spec, display_name=qualname, family=None, build=build)
