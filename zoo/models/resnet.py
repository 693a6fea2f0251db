"""ResNet-18/34/50/101/152 (He et al., "Deep Residual Learning for Image Recognition", 2015) as
torchvision builds them: BasicBlock and Bottleneck with the stride on the 3x3 convolution ("ResNet v1.5").

``stem="imagenet"`` is the 7x7/2 convolution and 3x3/2 max-pool, and the ``state_dict()`` is
torchvision's, key for key. ``stem="cifar"`` is a 3x3/1 convolution and no max-pool for 32x32 inputs;
its keys are the same, only ``conv1.weight`` changes shape.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from zoo.models.base import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    STEMS,
    build_model,
    check_choice,
    check_common,
    make_classifier,
    make_pretrained_cfg,
)
from zoo.registry import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "RESNET_DEPTHS", "make_resnet"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand, with a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]

RESNET_DEPTHS: dict[int, tuple[Block, list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class ResNet(nn.Module):
    """ResNet with torchvision's module names; the stem picks ImageNet or CIFAR input handling."""

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        check_common(num_classes, in_chans, drop_rate)
        check_choice("stem", stem, STEMS)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = stem
        self.drop_rate = drop_rate
        self.inplanes = 64
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = make_classifier(self.num_features, num_classes)
        if stem == "imagenet":
            self.pretrained_cfg = make_pretrained_cfg(
                input_size=(in_chans, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                num_classes=num_classes, first_conv="conv1", classifier="fc",
            )  # fmt: skip
        else:
            self.pretrained_cfg = make_pretrained_cfg(
                input_size=(in_chans, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_pct=1.0,
                num_classes=num_classes, first_conv="conv1", classifier="fc",
            )  # fmt: skip

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block starts as the identity
            # (Goyal et al., 2017); it helps large-batch training.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def get_classifier(self) -> nn.Module:
        """The final layer (Linear, or Identity when ``num_classes == 0``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh layer for ``num_classes`` (0 removes it)."""
        check_common(num_classes, self.in_chans)
        self.num_classes = num_classes
        self.fc = make_classifier(self.num_features, num_classes)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes, "label_names": None}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout and, unless ``pre_logits``, the classifier."""
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_resnet(depth: int = 50, **kwargs: Any) -> ResNet:
    """Build an ImageNet-family ResNet of any of the paper's depths (18, 34, 50, 101, 152)."""
    return _resnet(depth, kwargs)


def _resnet(depth: int, kwargs: dict[str, Any]) -> ResNet:
    if depth not in RESNET_DEPTHS:
        allowed = ", ".join(map(str, RESNET_DEPTHS))
        raise ValueError(f"depth={depth!r} is not a ResNet depth; choose one of {allowed}")
    block, layers = RESNET_DEPTHS[depth]
    return build_model(ResNet, f"resnet{depth}", kwargs, block=block, layers=layers)  # type: ignore[return-value]


@register_model
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock, stages [2, 2, 2, 2]."""
    return _resnet(18, kwargs)


@register_model
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock, stages [3, 4, 6, 3]."""
    return _resnet(34, kwargs)


@register_model
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: Bottleneck, stages [3, 4, 6, 3]."""
    return _resnet(50, kwargs)


@register_model
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: Bottleneck, stages [3, 4, 23, 3]."""
    return _resnet(101, kwargs)


@register_model
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: Bottleneck, stages [3, 8, 36, 3]."""
    return _resnet(152, kwargs)
