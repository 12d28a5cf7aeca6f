"""The architecture zoo: every model the WaveMix paper compares, selectable by the paper's notation.

Installed as `wavemix_profile.models`. Importing it is torch-free; the family modules (which
register the models) load on the first registry query.
"""
from ._paper import (PAPER, PAPER_ZOO, PaperAccuracy, PaperValue, paper_accuracies, paper_values,
                     paper_values_for)
from ._registry import (FAMILIES, PAPER_NUM_CLASSES, ModelEntry, SizeRule, UnknownModelError,
                        UnsupportedImageSizeError, create_model, get_entry, list_models,
                        normalize, register_model, resolve)

__all__ = ["FAMILIES", "PAPER_NUM_CLASSES", "ModelEntry", "PAPER", "PAPER_ZOO", "PaperValue", "SizeRule", "UnknownModelError",
           "UnsupportedImageSizeError", "create_model", "get_entry", "list_models", "normalize",
           "PaperAccuracy", "paper_accuracies", "paper_values", "paper_values_for", "register_model", "resolve"]
