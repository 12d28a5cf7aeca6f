"""Module-level model factories for python:MODULE:FACTORY specs in tests (children import them)."""
import os
import signal

import torch.nn as nn


def tiny_cnn(*, num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def linear_probe(*, num_classes: int, image_size: int) -> nn.Module:
    """Flatten + one bias-free Linear: memory that can be computed by hand."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes, bias=False))


def raises(*, num_classes: int, image_size: int) -> nn.Module:
    raise RuntimeError("factory refused to build")


def dies(*, num_classes: int, image_size: int) -> nn.Module:
    os.kill(os.getpid(), signal.SIGKILL)


def dies_at_16(*, num_classes: int, image_size: int) -> nn.Module:
    if image_size == 16:
        os.kill(os.getpid(), signal.SIGKILL)
    return tiny_cnn(num_classes=num_classes, image_size=image_size)
