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
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from ..core.errors import BadInputError
from ..models import PAPER_NUM_CLASSES, get_entry

PREFIXES = ("torchvision:", "timm:", "python:")


@dataclass(frozen=True)
class ModelSource:
    spec: str          # as stored in Settings.model
    display_name: str
    family: str | None
    build: Callable[..., nn.Module]   # build(num_classes=..., image_size=...)


IMAGENET_CLASSES = 1000


def default_num_classes(spec: str) -> int:
    """The classifier outputs a spec's model has unless asked otherwise: a torchvision model its
    weights' categories (1000 for ImageNet-1k), a timm model its pretrained config's (a headless
    config, 0, takes ImageNet's 1000), the zoo and python: factories the paper's 100. Never runs a
    user's code."""
    if spec.startswith("torchvision:"):
        import torchvision.models as tvm
        try:
            return len(tvm.get_model_weights(spec.split(":", 1)[1]).DEFAULT.meta["categories"])
        except (ValueError, KeyError, AttributeError):  # unknown names are resolve_source's to refuse
            return IMAGENET_CLASSES
    if spec.startswith("timm:"):
        try:
            from timm.models import get_pretrained_cfg
        except ImportError:
            return IMAGENET_CLASSES  # resolve_source says timm is missing
        config = get_pretrained_cfg(spec.split(":", 1)[1])
        return (config.num_classes if config is not None else 0) or IMAGENET_CLASSES
    return PAPER_NUM_CLASSES


def instance_num_classes(model: nn.Module, image_size: int) -> int:
    """The classes an nn.Module instance was built for: the width of its output for two images of
    `image_size` px (a copy in eval mode, without gradients, on the device of its parameters). The
    paper's 100 when that output is not a (batch, classes) tensor: measure's output check then says
    what the model gives."""
    import copy

    import torch
    probe = copy.deepcopy(model).eval()
    device = next(iter(probe.parameters()), torch.empty(0)).device
    with torch.no_grad():
        out = probe(torch.randn(2, 3, image_size, image_size, device=device))
    return out.shape[1] if isinstance(out, torch.Tensor) and out.dim() == 2 else PAPER_NUM_CLASSES


def spec_for_factory(factory: Callable[..., nn.Module]) -> str:
    """The spec of an importable module-level factory, so a child process can rebuild it."""
    if isinstance(factory, nn.Module):
        raise BadInputError("a model instance cannot be sent to a fresh process; pass its factory, or measure the "
                            "instance in this process (measure_model's default for an instance)")
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise BadInputError(f"model factory {factory!r} must be a module-level function importable by name to be "
                            "measured in a fresh process (a lambda, a local function or one defined in __main__ or a "
                            "notebook is not); measure it in this process with isolated=False")
    return f"python:{module}:{qualname}"


def local_source(model: Callable[..., nn.Module] | nn.Module) -> ModelSource:
    """A factory or a model instance measured in this process; an instance is copied for each build."""
    import copy
    if isinstance(model, nn.Module):
        name = type(model).__name__

        def build(*, num_classes: int, image_size: int) -> nn.Module:
            # Copying real storages under FakeTensorMode fails, and a second try in one process can crash
            # torch (2.x); refused before it starts, the estimator makes its fake copy from a real one.
            import torch
            if torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE) is not None:
                raise RuntimeError("a model instance is copied on real tensors only")
            return copy.deepcopy(model)
    else:
        name = getattr(model, "__qualname__", None) or type(model).__name__
        _check_factory(name, model)

        def build(*, num_classes: int, image_size: int) -> nn.Module:
            return model(num_classes=num_classes, image_size=image_size)
    return ModelSource(spec=f"local:{name}", display_name=name, family=None, build=build)


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


def _named(spec: str, library: str, known: list[str], make: Callable[[str, int, int], nn.Module]) -> ModelSource:
    """A model a library builds by name; unknown names fail with close matches."""
    name = spec.split(":", 1)[1]
    if name not in known:
        close = ", ".join(difflib.get_close_matches(name, known, n=3)) or "none"
        raise BadInputError(f"unknown {library} model {name!r}; close matches: {close}")

    def build(*, num_classes: int, image_size: int) -> nn.Module:
        return make(name, num_classes, image_size)

    return ModelSource(spec=spec, display_name=spec, family=None, build=build)


def _torchvision(spec: str) -> ModelSource:
    import torchvision.models as tvm
    return _named(spec, "torchvision classification", tvm.list_models(module=tvm),
                  lambda name, classes, size: tvm.get_model(name, weights=None, num_classes=classes))


def _timm(spec: str) -> ModelSource:
    try:
        import timm
    except ImportError:
        raise BadInputError(f"{spec} needs timm, which is not installed; "
                            "install the extra: pip install 'wavemix-profile[timm]'") from None
    def make(name: str, classes: int, size: int) -> nn.Module:
        # Models with a patch grid (ViTs, Swin...) take the input size; the others refuse the keyword.
        try:
            return timm.create_model(name, pretrained=False, num_classes=classes, img_size=size)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
            return timm.create_model(name, pretrained=False, num_classes=classes)

    return _named(spec, "timm", timm.list_models(), make)


def _import(module: str):
    """A module by name (the working folder is searched too, as `python -c` would) or by file path."""
    if _is_path(module):
        path = os.path.abspath(module)
        if not os.path.isfile(path):
            raise ImportError(f"no file {module!r}")
        name = "wavemix_profile_user_" + os.path.splitext(os.path.basename(path))[0]
        loaded = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(loaded)
        sys.modules[name] = mod
        loaded.loader.exec_module(mod)
        return mod
    if os.getcwd() not in sys.path and "" not in sys.path:  # the console script does not search it
        sys.path.append(os.getcwd())
    return importlib.import_module(module)


def _check_factory(spec: str, factory) -> None:
    """The factory must be callable and take num_classes= and image_size= (or **kwargs): say so before
    anything runs."""
    if not callable(factory):
        raise BadInputError(f"model factory {spec!r} is a {type(factory).__name__}, not callable; FACTORY must "
                            "be a function or class called as FACTORY(num_classes=..., image_size=...)")
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return  # a builtin or C callable: its call will say
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [n for n in ("num_classes", "image_size") if n not in names]
    if missing:
        raise BadInputError(f"model factory {spec!r} must accept num_classes= and image_size= keyword arguments; "
                            f"it lacks {' and '.join(missing)}")


def runs_user_code(spec: str) -> bool:
    """Whether building from `spec` runs a user's own module (python:): loaded in children only."""
    return spec.startswith("python:")


def _split_python(spec: str) -> tuple[str, str]:
    module_name, _, qualname = spec.removeprefix("python:").rpartition(":")
    if not module_name or not qualname:
        raise BadInputError(f"bad python model spec {spec!r}; use python:MODULE:FACTORY or "
                            "python:path/to/file.py:FACTORY")
    return module_name, qualname


def check_python_spec(spec: str) -> None:
    """What can be checked of a python: spec without running its code: its form, and that a file it
    names exists."""
    module_name, _ = _split_python(spec)
    if _is_path(module_name) and not os.path.isfile(module_name):
        raise BadInputError(f"cannot import model factory {spec!r}: no file {module_name!r}")


def display_name(spec: str) -> tuple[str, str | None]:
    """A spec's (display name, family) without running a user's code: a python: factory's own name."""
    if runs_user_code(spec):
        return spec.rpartition(":")[2] or spec, None
    source = resolve_source(spec)
    return source.display_name, source.family


def _is_path(module: str) -> bool:
    return module.endswith(".py") or os.sep in module or "/" in module


def _python(spec: str) -> ModelSource:
    module_name, qualname = _split_python(spec)
    try:
        obj = _import(module_name)
        for attr in qualname.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise BadInputError(f"cannot import model factory {spec!r}: {exc}") from None
    except SyntaxError as exc:
        raise BadInputError(f"cannot import model factory {spec!r}: SyntaxError: {exc}") from None
    except SystemExit as exc:
        raise BadInputError(f"cannot import model factory {spec!r}: its code called sys.exit({exc.code!r}) "
                            "while loading") from None
    except Exception as exc:  # noqa: BLE001 - the module's own code failed: the user's to fix
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BadInputError(f"cannot import model factory {spec!r}: {type(exc).__name__} while loading: "
                            f"{first}"[:500]) from None
    _check_factory(spec, obj)

    def build(*, num_classes: int, image_size: int) -> nn.Module:
        return obj(num_classes=num_classes, image_size=image_size)

    return ModelSource(spec=spec, display_name=qualname, family=None, build=build)
