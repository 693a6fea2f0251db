"""Model families. Importing this package registers every architecture."""

from zoo.models.cifar_resnet import CifarResNet, make_cifar_resnet
from zoo.models.mnist import MnistCNN, MnistDeepCNN
from zoo.models.resnet import ResNet, make_resnet
from zoo.models.vgg import VGG, VGG_CONFIGS, make_vgg

__all__ = [
    "VGG",
    "VGG_CONFIGS",
    "CifarResNet",
    "MnistCNN",
    "MnistDeepCNN",
    "ResNet",
    "make_cifar_resnet",
    "make_resnet",
    "make_vgg",
]
