"""wavemix-profile: what an image-classification network costs to train and run.

Parameters, FLOPs, peak memory, the largest batch that fits, and images per second, measured the
same way for every model and set beside the WaveMix paper's published numbers.
"""
__version__ = "0.1.0"
