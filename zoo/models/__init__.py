"""Model families. Importing this package registers every architecture."""

from __future__ import annotations

from zoo.models.base import FeatureGetterNet, ZooModel
from zoo.models.cfg import PretrainedCfg
from zoo.models.cifar_resnet import CifarResNet, make_cifar_resnet
from zoo.models.cifar_resnet import cifar_resnet_entrypoint as parametric_entrypoint
from zoo.models.mnist import MnistCNN, MnistDeepCNN
from zoo.models.resnet import ResNet, make_resnet
from zoo.models.vgg import VGG, VGG_CONFIGS, make_vgg

__all__ = [
    "VGG",
    "VGG_CONFIGS",
    "CifarResNet",
    "FeatureGetterNet",
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
