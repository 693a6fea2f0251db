"""ResNet-18 to 152 (He et al., 2015), ResNeXt (Xie et al., 2017) and wide ResNets (Zagoruyko & Komodakis, 2016) as
torchvision builds them ("ResNet v1.5"), with its options and ``state_dict()``; ``stem="cifar"`` is a 3x3/1 stem."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.models.base import STEMS, Stages, ZooModel, build_model, family_cfgs, make_pool, register_family
from zoo.models.cfg import CIFAR_CFG, PretrainedCfg
from zoo.utils import checks
from zoo.utils.checks import Invalid

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _zero_weight(norm: nn.Module) -> None:
    if getattr(norm, "weight", None) is not None:
        nn.init.zeros_(norm.weight)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (``ResNet`` refuses groups, width and dilation for it)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        # timm's regularisers, as plain attributes when set: no parameters, so torchvision's layout stays.
        self.drop_block: nn.Module | None = None
        self.drop_path: nn.Module | None = None

    def zero_init_last(self) -> None:
        _zero_weight(self.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        out = self.relu(out if self.drop_block is None else self.drop_block(out))
        out = self.bn2(self.conv2(out))
        if self.drop_path is not None:
            out = self.drop_path(out)
        # The shortcut last and in place, as torchvision: no second activation-sized tensor is held.
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, groups and dilation), 1x1 expand, with a residual connection."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.drop_block: nn.Module | None = None  # as in BasicBlock
        self.drop_path: nn.Module | None = None

    def zero_init_last(self) -> None:
        _zero_weight(self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(out if self.drop_block is None else self.drop_block(out))
        out = self.bn3(self.conv3(out))
        if self.drop_path is not None:
            out = self.drop_path(out)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]

# What each registered name fixes: block, blocks per stage, groups, width per group.
RESNET_ARCHS: dict[str, tuple[Block, tuple[int, int, int, int], int, int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
    "resnext101_64x4d": (Bottleneck, (3, 4, 23, 3), 64, 4),
    "wide_resnet50_2": (Bottleneck, (3, 4, 6, 3), 1, 128),
    "wide_resnet101_2": (Bottleneck, (3, 4, 23, 3), 1, 128),
}
RESNET_DEPTHS: dict[int, tuple[Block, list[int]]] = {
    int(name[6:]): (block, list(layers)) for name, (block, layers, _, _) in RESNET_ARCHS.items() if name[6:].isdigit()
}

_STEM_CFGS = {
    "imagenet": PretrainedCfg(),
    "cifar": CIFAR_CFG,
}
# The default weights' preprocessing where it differs from the stem's: tools/gen_default_cfgs.py writes it.
_WEIGHTS_CFGS: dict[str, dict[str, dict[str, Any]]] = {
    "imagenet": {
        "resnet50": {"crop_pct": 0.9655172413793104},
        "resnet101": {"crop_pct": 0.9655172413793104},
        "resnet152": {"crop_pct": 0.9655172413793104},
        "resnext50_32x4d": {"crop_pct": 0.9655172413793104},
        "resnext101_32x8d": {"crop_pct": 0.9655172413793104},
        "resnext101_64x4d": {"crop_pct": 0.9655172413793104},
        "wide_resnet50_2": {"crop_pct": 0.9655172413793104},
        "wide_resnet101_2": {"crop_pct": 0.9655172413793104},
    },
}
default_cfgs = family_cfgs(RESNET_ARCHS, _STEM_CFGS, _WEIGHTS_CFGS)


def resnet_arch(block: Block, layers: Sequence[int], groups: int, width_per_group: int) -> str | None:
    """The registered name of this structure, or None for one no name describes."""
    key = (block, tuple(layers), groups, width_per_group)
    return next((name for name, spec in RESNET_ARCHS.items() if spec == key), None)


class ResNetBase(ZooModel):
    """What the ImageNet and CIFAR ResNets share: the conv1-bn1-relu stem, stages ``layer1..`` and a global pool."""

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Stem, then one group per stage (``coarse``) or per block."""
        return dict(stem=r"^conv1|^bn1|^maxpool", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def _prune_stages(self, last: int) -> None:
        for i in range(last + 1, len(self.feature_info)):
            setattr(self, f"layer{i}", nn.Sequential())  # empty, not Identity: the stage lists still iterate

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool, dropout and, unless ``pre_logits``, the classifier."""
        x = self._flatten(self.avgpool(x))
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)


def _check_options(block: Block, layers: Sequence[int], groups: int, width: int, dilation: Any) -> list[bool]:
    if not (len(layers) == 4 and all(checks.is_int(n) and n > 0 for n in layers)):
        raise Invalid("layers", layers, "must be four block counts of at least 1, e.g. [3, 4, 6, 3]")
    checks.int_in("groups", groups, 1)
    checks.int_in("width_per_group", width, 1)
    dilate = [False] * 3 if dilation is None else list(dilation)
    if len(dilate) != 3 or not all(isinstance(d, bool) for d in dilate):
        raise Invalid("replace_stride_with_dilation", dilation, "must be three bools, one per stage 2-4")
    if issubclass(block, BasicBlock):  # ResNeXt, wide and dilated networks need Bottleneck
        checks.one_of("groups", groups, (1,))
        checks.one_of("width_per_group", width, (64,))
        checks.one_of("replace_stride_with_dilation", dilate, ([False] * 3,))
    return dilate


class ResNet(ResNetBase):
    """ResNet with torchvision's module names; the stem picks ImageNet or CIFAR input handling."""

    default_cfgs = default_cfgs
    stem_cfgs = _STEM_CFGS

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        norm_layer: NormLayer | None = None,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
        drop_block_rate: float = 0.0,
    ) -> None:
        super().__init__()
        checks.one_of("stem", stem, STEMS)
        self._setup(num_classes, in_chans, drop_rate, global_pool, head_grid=1)
        dilate = _check_options(block, layers, groups, width_per_group, replace_stride_with_dilation)
        checks.number_in("drop_path_rate", drop_path_rate, 0.0, below=1.0)
        checks.number_in("drop_block_rate", drop_block_rate, 0.0, below=1.0)
        if norm_layer is not None and not callable(norm_layer):
            raise Invalid("norm_layer", norm_layer, "must be a class such as torch.nn.BatchNorm2d")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.stem = stem
        self.groups = groups
        self.base_width = width_per_group
        self.inplanes = 64
        self.dilation = 1
        imagenet = stem == "imagenet"
        # Registered in torchvision's order, so that the module tree prints and iterates as there.
        kernel, stride, padding = (7, 2, 3) if imagenet else (3, 1, 1)
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=kernel, stride=stride, padding=padding, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if imagenet else nn.Identity()
        self.feature_info = [dict(num_chs=64, reduction=stride, module="relu")]
        stride *= 2 if imagenet else 1  # the max-pool
        for i, planes in enumerate((64, 128, 256, 512)):
            dilated = i > 0 and dilate[i - 1]
            layer_stride = 1 if i == 0 else 2
            layer = self._make_layer(block, planes, layers[i], layer_stride, dilated, norm_layer)
            setattr(self, f"layer{i + 1}", layer)
            stride *= 1 if dilated else layer_stride
            self.feature_info.append(dict(num_chs=planes * block.expansion, reduction=stride, module=f"layer{i + 1}"))
        self.avgpool = make_pool(global_pool, 1)
        self.num_features = self.head_hidden_size = 512 * block.expansion
        self.fc = self._new_classifier(num_classes)
        self._init_weights(zero_init_last=(BasicBlock, Bottleneck) if zero_init_residual else ())
        self._set_default_cfg(resnet_arch(block, layers, groups, width_per_group), stem)
        if drop_path_rate or drop_block_rate:
            self._add_regularisers(drop_path_rate, drop_block_rate)

    def _add_regularisers(self, drop_path_rate: float, drop_block_rate: float) -> None:
        """timm's stochastic depth (rising linearly over the blocks) and DropBlock (stages 3, 4), at timm's places."""
        from timm.layers import DropBlock2d, DropPath

        blocks = [b for i in range(1, 5) for b in getattr(self, f"layer{i}")]
        for i, b in enumerate(blocks):
            rate = drop_path_rate * i / max(len(blocks) - 1, 1)
            b.drop_path = DropPath(rate) if rate > 0 else None
        if drop_block_rate:
            for layer, size, gamma in ((self.layer3, 5, 0.25), (self.layer4, 3, 1.0)):
                for b in layer:
                    b.drop_block = DropBlock2d(drop_prob=drop_block_rate, block_size=size, gamma_scale=gamma)

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int, dilate: bool, norm_layer: NormLayer
    ) -> nn.Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), norm_layer(planes * block.expansion)
            )
        shared = dict(groups=self.groups, base_width=self.base_width, norm_layer=norm_layer)
        layers = [block(self.inplanes, planes, stride, downsample, dilation=previous_dilation, **shared)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation, **shared) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _stages(self) -> Stages:
        return [[self._stem], [self.maxpool, *self.layer1], [*self.layer2], [*self.layer3], [*self.layer4]]

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return self.layer4(self.layer3(self.layer2(x)))


def make_resnet(depth: int = 50, **kwargs: Any) -> ResNet:
    """An ImageNet-family ResNet of one of the paper's depths (18, 34, 50, 101, 152)."""
    checks.one_of("depth", depth, tuple(RESNET_DEPTHS))
    return _resnet(f"resnet{depth}", kwargs)


def _resnet(arch: str, kwargs: dict[str, Any]) -> ResNet:
    block, layers, groups, width = RESNET_ARCHS[arch]
    # As in torchvision, resnet50(groups=32, width_per_group=4) is ResNeXt-50 32x4d (and gets its configuration).
    kwargs = dict(kwargs)
    groups, width = kwargs.pop("groups", groups), kwargs.pop("width_per_group", width)
    fixed = dict(block=block, layers=list(layers), groups=groups, width_per_group=width)
    return build_model(ResNet, arch, kwargs, **fixed)  # type: ignore[return-value]


register_family(
    globals(),
    {
        "resnet18": "ResNet-18: BasicBlock, stages [2, 2, 2, 2].",
        "resnet34": "ResNet-34: BasicBlock, stages [3, 4, 6, 3].",
        "resnet50": "ResNet-50: Bottleneck, stages [3, 4, 6, 3].",
        "resnet101": "ResNet-101: Bottleneck, stages [3, 4, 23, 3].",
        "resnet152": "ResNet-152: Bottleneck, stages [3, 8, 36, 3].",
        "resnext50_32x4d": "ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels in each 3x3 convolution.",
        "resnext101_32x8d": "ResNeXt-101 32x8d: ResNet-101 with 32 groups of 8 channels in each 3x3 convolution.",
        "resnext101_64x4d": "ResNeXt-101 64x4d: ResNet-101 with 64 groups of 4 channels in each 3x3 convolution.",
        "wide_resnet50_2": "Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide (128 channels per group).",
        "wide_resnet101_2": "Wide ResNet-101-2: ResNet-101 with bottlenecks twice as wide (128 channels per group).",
    },
    _resnet,
)
