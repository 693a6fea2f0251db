"""The CIFAR-10 ResNets of He et al. (2015), section 4.2: 6n+2 layers, three stages of n BasicBlocks
with 16, 32 and 64 filters on 32x32 inputs: resnet20/32/44/56/110/1202.

Shortcut option A (the paper's choice for CIFAR, the default) is parameter-free: it subsamples and pads
the new channels with zeros. Option B projects with a 1x1 convolution and batch norm where shapes change.
Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1..3``, ``fc``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.models.base import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    build_model,
    check_choice,
    check_common,
    make_classifier,
    make_pretrained_cfg,
)
from zoo.registry import register_model

__all__ = ["CifarResNet", "make_cifar_resnet"]


class PadShortcut(nn.Module):
    """Option A: take every other pixel and zero-pad the extra channels (no parameters)."""

    def __init__(self, out_planes: int, stride: int):
        super().__init__()
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - x.shape[1]
        # Split the zero channels on both sides, as the reference implementations do.
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def extra_repr(self) -> str:
        return f"out_planes={self.out_planes}, stride={self.stride}"


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions with an option A or B shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            if shortcut == "A":
                self.downsample = PadShortcut(planes, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """The paper's CIFAR ResNet of ``depth = 6n + 2`` layers."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        shortcut: str = "A",
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        stem: str = "cifar",
    ) -> None:
        super().__init__()
        check_common(num_classes, in_chans, drop_rate)
        check_choice("shortcut", shortcut, ("A", "B"))
        # Only the CIFAR stem exists for these networks; the argument is accepted so that the
        # same command line (``--stem cifar``) works for every family.
        check_choice("stem", stem, ("cifar",))
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"depth={depth!r} is invalid for a CIFAR ResNet: use 6n+2 with n >= 1 (20, 32, 44, 56, 110, 1202, ...)"
            )
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.shortcut = shortcut
        self.stem = stem
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 16
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 64
        self.fc = make_classifier(64, num_classes)
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
            for m in self.modules():
                if isinstance(m, CifarBasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [CifarBasicBlock(self.inplanes, planes, stride, self.shortcut)]
        self.inplanes = planes
        layers += [CifarBasicBlock(planes, planes, 1, self.shortcut) for _ in range(1, blocks)]
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
        """The last stage's 64-channel feature map, before pooling."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout and, unless ``pre_logits``, the classifier."""
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_cifar_resnet(depth: int = 20, **kwargs: Any) -> CifarResNet:
    """Build the paper's CIFAR ResNet of any depth 6n+2."""
    return build_model(CifarResNet, f"resnet{depth}", {"depth": depth, **kwargs})  # type: ignore[return-value]


def _cifar(depth: int, kwargs: dict[str, Any]) -> CifarResNet:
    return build_model(CifarResNet, f"resnet{depth}", kwargs, depth=depth)  # type: ignore[return-value]


@register_model
def resnet20(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3), the paper's Table 6."""
    return _cifar(20, kwargs)


@register_model
def resnet32(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5)."""
    return _cifar(32, kwargs)


@register_model
def resnet44(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-44 (n=7)."""
    return _cifar(44, kwargs)


@register_model
def resnet56(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9)."""
    return _cifar(56, kwargs)


@register_model
def resnet110(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n=18)."""
    return _cifar(110, kwargs)


@register_model
def resnet1202(**kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-1202 (n=200), the paper's over-deep network."""
    return _cifar(1202, kwargs)
