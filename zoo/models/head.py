"""Classifier heads: the pooling ``global_pool`` names and the final layer, with each family's initialisation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.errors import ArgumentValueError

__all__ = ["POOL_TYPES", "AdaptiveAvgMaxPool2d", "check_pool", "make_classifier", "make_pool"]

POOL_TYPES = ("avg", "max", "avgmax", "")


class AdaptiveAvgMaxPool2d(nn.Module):
    """The mean of adaptive average and max pooling (timm's ``"avgmax"``)."""

    def __init__(self, output_size: int = 1) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.adaptive_avg_pool2d(x, self.output_size) + F.adaptive_max_pool2d(x, self.output_size))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def check_pool(global_pool: str, num_classes: int, grid_head: bool) -> None:
    """Raise an ArgumentValueError (a ValueError) unless ``global_pool`` is a pooling type this head can use with
    ``num_classes``."""
    if global_pool not in POOL_TYPES:
        raise ArgumentValueError(
            f"global_pool={global_pool!r} is not a pooling type; choose one of {', '.join(map(repr, POOL_TYPES))} "
            "('' = no pooling)"
        )
    if global_pool == "" and num_classes > 0 and not grid_head:
        raise ArgumentValueError(
            f"global_pool='' (no pooling) leaves a feature map, which a {num_classes}-class Linear cannot take: "
            "use num_classes=0 with it, or a pooling type"
        )


def make_pool(global_pool: str, output_size: int) -> nn.Module:
    """torch's own adaptive pooling module for ``global_pool`` (Identity for ``""``), as torchvision names it."""
    if global_pool == "avg":
        return nn.AdaptiveAvgPool2d((output_size, output_size))
    if global_pool == "max":
        return nn.AdaptiveMaxPool2d((output_size, output_size))
    if global_pool == "avgmax":
        return AdaptiveAvgMaxPool2d(output_size)
    return nn.Identity()


def make_classifier(in_features: int, num_classes: int, init: str = "default") -> nn.Module:
    """A Linear head, or Identity when ``num_classes == 0`` (the model then returns pre-logits features).

    ``init``: ``"default"`` keeps PyTorch's (as torchvision's ResNet does), ``"normal"`` is torchvision's
    VGG N(0, 0.01), ``"xavier"`` the seed course's Xavier-uniform.
    """
    if num_classes == 0:
        return nn.Identity()
    fc = nn.Linear(in_features, num_classes)
    if init == "normal":
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.constant_(fc.bias, 0)
    elif init == "xavier":
        nn.init.xavier_uniform_(fc.weight)
    return fc
