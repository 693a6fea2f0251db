"""The CIFAR-10 ResNets of He et al. (2015), section 4.2: 6n+2 layers in three stages of n BasicBlocks with 16, 32
and 64 filters, for 32x32 inputs, with torchvision's ResNet module names and the paper's shortcut options A and B."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.models.base import Stages, build_model, family_cfgs, make_pool, named_builder, register_family
from zoo.models.cfg import CIFAR_CFG
from zoo.models.resnet import ResNetBase
from zoo.utils import checks
from zoo.utils.checks import Invalid


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

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision does: no extra activation-sized tensor per block
        return self.relu(out)


# The paper's depths are registered names; another 6n+2 depth is ``cifar_resnet<depth>`` (never ImageNet's
# ``resnet50``), a name create_model rebuilds it from.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)

_STEM_CFGS = {"cifar": replace(CIFAR_CFG, num_classes=10)}
# The default weights' preprocessing where it differs from the stem's: tools/gen_default_cfgs.py writes it.
_WEIGHTS_CFGS: dict[str, dict[str, dict[str, Any]]] = {}
default_cfgs = family_cfgs([f"resnet{d}" for d in CIFAR_DEPTHS], _STEM_CFGS, _WEIGHTS_CFGS)


def cifar_resnet_arch(depth: int) -> str:
    """The architecture name of the CIFAR ResNet of ``depth`` layers."""
    return f"resnet{depth}" if depth in CIFAR_DEPTHS else f"cifar_resnet{depth}"


class CifarResNet(ResNetBase):
    """The paper's CIFAR ResNet of ``depth = 6n + 2`` layers."""

    default_cfgs = default_cfgs
    stem_cfgs = _STEM_CFGS

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        shortcut: str = "A",
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        stem: str = "cifar",
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans, drop_rate, global_pool, head_grid=1)
        checks.one_of("shortcut", shortcut, ("A", "B"))
        checks.one_of("stem", stem, ("cifar",))  # the one stem, taken so that `--stem cifar` works for every family
        if checks.int_in("depth", depth, 8) % 6 != 2:
            raise Invalid("depth", depth, "must be 6n+2 (20, 32, 44, 56, 110, 1202, ...)")
        n = (depth - 2) // 6
        self.depth = depth
        self.shortcut = shortcut
        self.stem = stem
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 16
        self.feature_info = [dict(num_chs=16, reduction=1, module="relu")]
        for i, planes in enumerate((16, 32, 64)):
            setattr(self, f"layer{i + 1}", self._make_layer(planes, n, 1 if i == 0 else 2))
            self.feature_info.append(dict(num_chs=planes, reduction=2**i, module=f"layer{i + 1}"))
        self.avgpool = make_pool(global_pool, 1)
        self.num_features = self.head_hidden_size = 64
        self.fc = self._new_classifier(num_classes)
        self._init_weights(zero_init_last=CifarBasicBlock if zero_init_residual else ())
        self._set_default_cfg(cifar_resnet_arch(depth), stem)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [CifarBasicBlock(self.inplanes, planes, stride, self.shortcut)]
        self.inplanes = planes
        layers += [CifarBasicBlock(planes, planes, 1, self.shortcut) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _stages(self) -> Stages:
        return [[self._stem], [*self.layer1], [*self.layer2], [*self.layer3]]

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))


def make_cifar_resnet(depth: int = 20, **kwargs: Any) -> CifarResNet:
    """The paper's CIFAR ResNet of any depth 6n+2 (named ``resnet<depth>`` or ``cifar_resnet<depth>``)."""
    return _cifar(depth, kwargs)


def cifar_resnet_entrypoint(name: str) -> Callable[..., CifarResNet] | None:
    """The builder for a ``cifar_resnet<depth>`` name (any 6n+2 depth, checked as it builds), or None for another."""
    match = re.fullmatch(r"cifar_resnet(\d+)", name)
    if match is None:
        return None
    depth = int(match[1])
    return named_builder(name, f"CIFAR ResNet-{depth} (n={(depth - 2) // 6}).", __name__, partial(_cifar, depth))


def _cifar(depth: int, kwargs: dict[str, Any]) -> CifarResNet:
    return build_model(CifarResNet, cifar_resnet_arch(depth), kwargs, depth=depth)  # type: ignore[return-value]


register_family(
    globals(),
    {
        "resnet20": "CIFAR ResNet-20 (n=3), the paper's Table 6.",
        "resnet32": "CIFAR ResNet-32 (n=5).",
        "resnet44": "CIFAR ResNet-44 (n=7).",
        "resnet56": "CIFAR ResNet-56 (n=9).",
        "resnet110": "CIFAR ResNet-110 (n=18).",
        "resnet1202": "CIFAR ResNet-1202 (n=200), the paper's over-deep network.",
    },
    lambda arch, kwargs: _cifar(int(arch[6:]), kwargs),
)
