"""Model families. Importing this package registers every architecture."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from zoo.models.base import ZooModel
from zoo.models.cfg import PretrainedCfg
from zoo.models.cifar_resnet import CifarResNet, cifar_resnet_entrypoint, make_cifar_resnet
from zoo.models.features import FeatureGetterNet, FeatureInfo
from zoo.models.mnist import MnistCNN, MnistDeepCNN
from zoo.models.resnet import ResNet, make_resnet
from zoo.models.vgg import VGG, VGG_CONFIGS, make_vgg

__all__ = [
    "VGG",
    "VGG_CONFIGS",
    "CifarResNet",
    "FeatureGetterNet",
    "FeatureInfo",
    "MnistCNN",
    "MnistDeepCNN",
    "PretrainedCfg",
    "ResNet",
    "ZooModel",
    "make_cifar_resnet",
    "make_resnet",
    "make_vgg",
    "parametric_entrypoint",
]


def parametric_entrypoint(name: str) -> Callable[..., nn.Module] | None:
    """The builder for an architecture named by its parameters rather than registered (``cifar_resnet50``),
    or None if ``name`` is not such a name."""
    return cifar_resnet_entrypoint(name)
