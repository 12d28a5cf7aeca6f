"""Estimate: what a GPU would hold, predicted without one.

Models of PyTorch's CUDA caching allocator (allocator, reserved), extrapolating a recorded step to any
batch (extrapolation), CUDA's autocast policy, the CUDA overheads by GPU generation, the timeline's
data. The fake-tensor recording these read is measure/memory.py, beside the CUDA counters it mirrors.
May import: sources, store, core, the zoo, and estimate.
"""
