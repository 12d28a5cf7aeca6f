"""The architecture zoo: every model the WaveMix paper compares, selectable by the paper's notation.

Installed as `wavemix_profile.models`. Importing it registers every family.
"""
from ._paper import PAPER, PaperValue, paper_values, paper_values_for
from ._registry import (FAMILIES, ModelEntry, SizeRule, UnknownModelError,
                        UnsupportedImageSizeError, create_model, get_entry, list_models,
                        normalize, register_model, resolve)
from . import resnet, convmixer, wavemix, fnet2d, mlpmixer2d, vit, vin, cct, cvt  # noqa: F401  (registers)

__all__ = ["FAMILIES", "ModelEntry", "PAPER", "PaperValue", "SizeRule", "UnknownModelError",
           "UnsupportedImageSizeError", "create_model", "get_entry", "list_models", "normalize",
           "paper_values", "paper_values_for", "register_model", "resolve"]
