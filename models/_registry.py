"""Model registry: resolves the paper's notation (`WaveMix-128/7`, `CCT-128/4x4`) to builders.

Each family file decorates small entry points with :func:`register_model`. Names are matched
case-insensitively, with `x` and `×` interchangeable and spaces ignored; globs (`WaveMix-*`)
select several. Unknown names raise with the closest registered names.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:  # the registry itself stays torch-free; the family modules import torch
    import torch.nn as nn

FAMILIES = ("convolutional", "token mixer", "transformer", "WaveMix")
# The zoo's classifier outputs unless asked otherwise: CIFAR-100's, the paper's Tables 1, 5 and 6.
PAPER_NUM_CLASSES = 100
# Imported on the first registry query, so paper data and names are readable without torch.
# Their order is the listing order: Table 1's, whatever order the modules happen to be imported in.
FAMILY_MODULES = ("resnet", "fnet2d", "mlpmixer2d", "convmixer", "vit", "vin", "cct", "cvt", "wavemix")


class UnknownModelError(KeyError):
    """A model name that no registry entry matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnsupportedImageSizeError(ValueError):
    """A model asked to build at an image size its architecture cannot take."""


@dataclass(frozen=True)
class SizeRule:
    """Which square input sizes (pixels) a model accepts, with a human description."""

    check: Callable[[int], bool]
    description: str
    # How the layers change with the image size, in a few words for chart legends and tables
    # (e.g. a patch size that keeps a token grid); empty: the same layers at every size.
    adapts: str = ""

    def validate(self, model: str, image_size: int) -> None:
        if not isinstance(image_size, int) or image_size < 1 or not self.check(image_size):
            raise UnsupportedImageSizeError(
                f"{model} cannot take image size {image_size!r} px; it accepts {self.description}"
            )


ANY_SIZE_FROM_8 = SizeRule(lambda s: s >= 8, "any size of at least 8 px")


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its display name, family and how to build it."""

    name: str
    family: str
    builder: Callable[..., "nn.Module"]
    sizes: SizeRule = ANY_SIZE_FROM_8
    aliases: tuple[str, ...] = ()
    description: str = ""
    params_note: str = ""
    default_kwargs: dict = field(default_factory=dict)

    def build(self, *, num_classes: int = PAPER_NUM_CLASSES, image_size: int = 32, **kwargs) -> "nn.Module":
        """Build the model for `num_classes` classes and square `image_size`-pixel inputs."""
        self.sizes.validate(self.name, image_size)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        return self.builder(num_classes=num_classes, image_size=image_size,
                            **{**self.default_kwargs, **kwargs})


def normalize(name: str) -> str:
    """Canonical key for matching: lower case, `×` as `x`, no spaces."""
    return name.strip().lower().replace("×", "x").replace(" ", "")


_ENTRIES: dict[str, ModelEntry] = {}
_KEYS: dict[str, str] = {}  # normalized name or alias -> display name
_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in FAMILY_MODULES:
            importlib.import_module(f"{__package__}.{module}")


def register_model(name: str, *, family: str, sizes: SizeRule = ANY_SIZE_FROM_8,
                   aliases: Iterable[str] = (), params_note: str = "", **default_kwargs):
    """Decorator registering `builder(*, num_classes, image_size, **kw) -> nn.Module` as `name`.

    `params_note` explains, where the paper leaves the configuration open, why our parameter
    count differs from the paper's Table 1 by more than 3%; `default_kwargs` go to the builder.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")

    def decorate(builder: Callable[..., "nn.Module"]):
        entry = ModelEntry(name=name, family=family, builder=builder, sizes=sizes,
                           aliases=tuple(aliases), description=(builder.__doc__ or "").strip(),
                           params_note=params_note, default_kwargs=default_kwargs)
        keys = [normalize(k) for k in (name, *entry.aliases)]
        for key in keys:
            if key in _KEYS:
                raise ValueError(f"model name {key!r} is registered twice ({_KEYS[key]} and {name})")
        for key in keys:
            _KEYS[key] = name
        _ENTRIES[name] = entry
        return builder

    return decorate


def _listing_rank(name: str) -> tuple[int, int]:
    module = _ENTRIES[name].builder.__module__.rsplit(".", 1)[-1]
    family = FAMILY_MODULES.index(module) if module in FAMILY_MODULES else len(FAMILY_MODULES)
    return family, list(_ENTRIES).index(name)


def list_models(pattern: str = "*") -> list[str]:
    """Display names matching a glob (case-insensitive), in registration order."""
    _ensure_loaded()
    key = normalize(pattern)
    return [n for n in sorted(_ENTRIES, key=_listing_rank) if fnmatch.fnmatchcase(normalize(n), key)
            or any(fnmatch.fnmatchcase(normalize(a), key) for a in _ENTRIES[n].aliases)]


def get_entry(name: str) -> ModelEntry:
    """The entry for one exact name or alias; raises UnknownModelError with close matches."""
    _ensure_loaded()
    key = normalize(name)
    if key in _KEYS:
        return _ENTRIES[_KEYS[key]]
    close = difflib.get_close_matches(key, list(_KEYS), n=3, cutoff=0.5)
    hint = ", ".join(_KEYS[c] for c in dict.fromkeys(close)) if close else "none"
    raise UnknownModelError(
        f"unknown model {name!r}; close matches: {hint}; `wavemix-profile list` shows all {len(_ENTRIES)}")


def resolve(patterns: Iterable[str]) -> list[str]:
    """Expand names and globs to display names, keeping order and dropping repeats."""
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            found = list_models(pattern)
            if not found:
                raise UnknownModelError(f"no registered model matches {pattern!r}")
        else:
            found = [get_entry(pattern).name]
        out.extend(n for n in found if n not in out)
    return out


def create_model(name: str, *, num_classes: int = PAPER_NUM_CLASSES, image_size: int = 32, **kwargs) -> "nn.Module":
    """Build a registered model by name."""
    return get_entry(name).build(num_classes=num_classes, image_size=image_size, **kwargs)
