"""wavemix-profile: what an image-classification network costs to train and run.

Parameters, FLOPs, peak memory, the largest batch that fits, and images per second, measured the
same way for every model and set beside the WaveMix paper's published numbers.
"""
from .core.version import __version__

__all__ = ["__version__", "measure_model"]


def __getattr__(name: str):
    # Lazy, so that `import wavemix_profile.core.results` (renderers, reports) never loads torch.
    if name == "measure_model":
        from .api import measure_model
        return measure_model
    raise AttributeError(f"module 'wavemix_profile' has no attribute {name!r}")
