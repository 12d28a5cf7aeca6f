"""ResNet-18/34/50/101 (He et al. 2015), torchvision's, with the CIFAR stem by default.

The paper's ResNet parameter counts and its small inputs (32 px CIFAR, 28 px EMNIST) imply the
CIFAR variant: the 7x7 stride-2 conv and the 3x3 max-pool of the ImageNet stem give way to one
3x3 stride-1 conv without bias, so a 32 px image keeps 32x32 maps in the first stage.
`stem="imagenet"` keeps torchvision's stem (4x down-sampling before the first stage).
Section 4.3's dropout of 0.5 goes before the classifier (torchvision's ResNets have none).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn as nn

from ._registry import SizeRule, UnsupportedImageSizeError, register_model

STEMS = ("cifar", "imagenet")
# The ImageNet stem divides by 4 before the stages and by 32 in all; below 32 px the last
# stage would see maps under 1x1.
MIN_SIZE = {"cifar": 8, "imagenet": 32}

RESNET_SIZES = SizeRule(
    lambda s: s >= MIN_SIZE["cifar"],
    "any size of at least 8 px with the default CIFAR stem (at least 32 px with "
    "stem='imagenet')")


@dataclass(frozen=True)
class ResNetConfig:
    """ResNet-`depth`, its stem ("cifar" or "imagenet"), the dropout before the classifier."""

    depth: int
    stem: str = "cifar"
    dropout: float = 0.5

    def __post_init__(self):
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")


# torchvision is imported on first build: importing it costs about a second, which every
# isolated measuring process would otherwise pay for models that are not ResNets.
BUILDERS: dict[int, str] = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101"}


def build_resnet(config: ResNetConfig, *, num_classes: int, image_size: int) -> nn.Module:
    """torchvision ResNet-`depth` for `num_classes` classes and `image_size`-px inputs."""
    name = f"ResNet-{config.depth}"
    if image_size < MIN_SIZE[config.stem]:
        raise UnsupportedImageSizeError(
            f"{name} with stem={config.stem!r} cannot take image size {image_size} px; it accepts "
            f"sizes of at least {MIN_SIZE[config.stem]} px")
    from torchvision.models import resnet
    model = getattr(resnet, BUILDERS[config.depth])(num_classes=num_classes)
    if config.stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(config.dropout), model.fc)
    return model


@register_model("ResNet-18", family="convolutional", sizes=RESNET_SIZES)
def resnet18(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """ResNet-18 (basic blocks 2-2-2-2). Options: `stem` ("cifar" or "imagenet"), `dropout`.

    Parameters (100 classes, CIFAR stem): 11,220,132, Table 1 11.2M (1.002x).
    """
    return build_resnet(replace(ResNetConfig(depth=18), **options), num_classes=num_classes,
                        image_size=image_size)


@register_model("ResNet-34", family="convolutional", sizes=RESNET_SIZES)
def resnet34(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """ResNet-34 (basic blocks 3-4-6-3). Options: `stem` ("cifar" or "imagenet"), `dropout`.

    Parameters (100 classes, CIFAR stem): 21,328,292, Table 1 21.3M (1.001x).
    """
    return build_resnet(replace(ResNetConfig(depth=34), **options), num_classes=num_classes,
                        image_size=image_size)


@register_model("ResNet-50", family="convolutional", sizes=RESNET_SIZES,
                params_note=("Table 1 gives 25.2M; torchvision's ResNet-50 with the CIFAR stem "
                             "is 23,705,252 at 100 classes (0.941x), and the paper's own Table 2 "
                             "gives 23.6M for ResNet-50. No standard ResNet-50 at 10 or 100 "
                             "classes has 25.2M (the 1000-class ImageNet head gives 25.5M), so "
                             "Table 1's figure looks like a slip; we keep the standard network."))
def resnet50(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """ResNet-50 (bottleneck blocks 3-4-6-3). Options: `stem` ("cifar" or "imagenet"), `dropout`.

    Parameters (100 classes, CIFAR stem): paper Table 1 25.2M, ours 23,705,252 (0.941x).
    Assumption: the standard torchvision ResNet-50, as for the other depths. The gap is the
    paper's: its Table 2 lists ResNet-50 at 23.6M, in line with ours, and no standard
    ResNet-50 at 10 or 100 classes reaches 25.2M (1000 classes: 25.5M).
    """
    return build_resnet(replace(ResNetConfig(depth=50), **options), num_classes=num_classes,
                        image_size=image_size)


@register_model("ResNet-101", family="convolutional", sizes=RESNET_SIZES)
def resnet101(*, num_classes: int, image_size: int, **options) -> nn.Module:
    """ResNet-101 (bottleneck blocks 3-4-23-3). Options: `stem` ("cifar" or "imagenet"), `dropout`.

    Parameters (100 classes, CIFAR stem): 42,697,380; Table 1 has no ResNet-101 (Table 4 uses
    it on ImageNet at 64 px).
    """
    return build_resnet(replace(ResNetConfig(depth=101), **options), num_classes=num_classes,
                        image_size=image_size)
