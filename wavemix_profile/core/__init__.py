"""Core: the facts and records every layer shares, torch-free.

Errors, result records and their ranges, the parent-child protocol's messages, the GPU tables
(gpus, gpu_peaks, figures), the paper's accuracies, the tool's version.
May import: the zoo (wavemix_profile.models) and core.
"""
