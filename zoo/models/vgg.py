"""VGG: every configuration of Table 1 of Simonyan & Zisserman (2014), with torchvision's layout and ``state_dict()``;
the CIFAR stem ends in a global pool and a 512-wide classifier instead of the 25088-wide layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from zoo.models.base import STEMS, Stages, ZooModel, build_model, family_cfgs, make_pool, register_family
from zoo.models.cfg import CIFAR_CFG, PretrainedCfg
from zoo.utils import checks
from zoo.utils.checks import Invalid

# A config entry is one of: an int (3x3 conv with that many filters), "M" (2x2 max-pool),
# "LRN" (local response normalisation) or a (filters, kernel) pair for other kernel sizes.
LayerSpec = int | str | tuple[int, int]

VGG_CONFIGS: dict[str, list[LayerSpec]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _parse_spec(spec: LayerSpec, index: int) -> tuple[str, int, int]:
    """(kind, filters, kernel) of one config entry."""
    if spec in ("M", "LRN"):
        return str(spec), 0, 0
    if checks.is_int(spec) and spec > 0:
        return "conv", spec, 3
    pair = isinstance(spec, (tuple, list)) and len(spec) == 2 and all(checks.is_int(v) and v > 0 for v in spec)
    if pair and spec[1] % 2:
        return "conv", spec[0], spec[1]
    raise Invalid(f"cfg[{index}]", spec, "must be a positive int (3x3 conv), 'M', 'LRN' or (filters, odd kernel)")


def make_features(
    cfg: Sequence[LayerSpec], in_chans: int = 3, batch_norm: bool = False, ceil_mode: bool = False
) -> nn.Sequential:
    """The convolutional trunk for a config list, numbered as torchvision numbers it."""
    layers: list[nn.Module] = []
    channels = in_chans
    for i, spec in enumerate(cfg):
        kind, filters, kernel = _parse_spec(spec, i)
        if kind == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
        elif kind == "LRN":
            # The paper uses AlexNet's LRN (k=2, n=5, alpha=1e-4, beta=0.75); PyTorch divides alpha
            # by n, so alpha=5e-4 here reproduces it.
            layers.append(nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0))
        else:
            layers.append(nn.Conv2d(channels, filters, kernel_size=kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(filters))
            layers.append(nn.ReLU(inplace=True))
            channels = filters
    return nn.Sequential(*layers)


def _resolve_cfg(cfg: str | Sequence[LayerSpec]) -> list[LayerSpec]:
    if isinstance(cfg, str):
        return list(VGG_CONFIGS[checks.one_of("cfg", cfg, tuple(VGG_CONFIGS))])
    if "conv" not in [_parse_spec(s, i)[0] for i, s in enumerate(cfg)]:
        raise Invalid("cfg", cfg, "must hold a convolution")
    return list(cfg)


def _feature_info(features: nn.Sequential) -> tuple[list[dict[str, Any]], list[int]]:
    """timm's taps, each stage's output just before its max-pool and the trunk's last layer, and their indices."""
    info: list[dict[str, Any]] = []
    channels, reduction = 0, 1
    for i, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            if i > 0:
                info.append(dict(num_chs=channels, reduction=reduction, module=f"features.{i - 1}"))
            reduction *= 2
        elif isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
    info.append(dict(num_chs=channels, reduction=reduction, module=f"features.{len(features) - 1}"))
    return info, [int(tap["module"].split(".")[1]) for tap in info]


# What each registered name fixes: config and batch norm; other configs have no name.
VGG_ARCHS: dict[str, tuple[str, bool]] = {
    "vgg11": ("A", False),
    "vgg11_lrn": ("A-LRN", False),
    "vgg13": ("B", False),
    "vgg16c": ("C", False),
    "vgg16": ("D", False),
    "vgg19": ("E", False),
    "vgg11_bn": ("A", True),
    "vgg13_bn": ("B", True),
    "vgg16c_bn": ("C", True),
    "vgg16_bn": ("D", True),
    "vgg19_bn": ("E", True),
}

_STEM_CFGS = {
    "imagenet": PretrainedCfg(first_conv="features.0", classifier="classifier.6"),
    "cifar": replace(CIFAR_CFG, first_conv="features.0", classifier="classifier.3"),
}
# The default weights' preprocessing where it differs from the stem's: tools/gen_default_cfgs.py writes it.
_WEIGHTS_CFGS: dict[str, dict[str, dict[str, Any]]] = {}
default_cfgs = family_cfgs(VGG_ARCHS, _STEM_CFGS, _WEIGHTS_CFGS)


def vgg_arch(cfg: Sequence[LayerSpec], batch_norm: bool) -> str | None:
    """The registered name of a layer list (one of Table 1's configs), or None."""
    letter = next((k for k, v in VGG_CONFIGS.items() if list(v) == list(cfg)), None)
    return next((name for name, spec in VGG_ARCHS.items() if spec == (letter, bool(batch_norm))), None)


class VGG(ZooModel):
    """VGG network for any layer config, with an ImageNet (torchvision) or CIFAR head."""

    default_cfgs = default_cfgs
    stem_cfgs = _STEM_CFGS
    grid_head = True
    classifier_attr = "classifier"
    classifier_init = "normal"

    def __init__(
        self,
        cfg: str | Sequence[LayerSpec] = "D",
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        drop_rate: float = 0.5,
        init_weights: bool = True,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        checks.one_of("stem", stem, STEMS)
        # The ImageNet head pools to torchvision's 7x7 grid for its 25088-wide layer; the CIFAR head to 1x1.
        self._setup(num_classes, in_chans, drop_rate, global_pool, head_grid=7 if stem == "imagenet" else 1)
        self.cfg = layers = _resolve_cfg(cfg)
        self.stem = stem
        # The CIFAR head rounds pooled sizes up so that 28x28 inputs (MNIST) survive five pools.
        self.features = make_features(layers, in_chans, batch_norm, ceil_mode=stem == "cifar")
        self.feature_info, self.feature_ends = _feature_info(self.features)
        width = self.feature_info[-1]["num_chs"]
        self.avgpool = make_pool(global_pool, self.head_grid)
        hidden = 4096 if stem == "imagenet" else 512
        self.num_features, self.head_hidden_size = width, hidden
        self.classifier = nn.Sequential(
            nn.Linear(width * self.head_grid**2, hidden),
            nn.ReLU(True),
            nn.Dropout(p=drop_rate),
            *([nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=drop_rate)] if stem == "imagenet" else []),
            self._new_classifier(num_classes),
        )
        # forward_head runs the classifier layer by layer, up to this index for pre-logits: slicing the
        # Sequential there would break TorchScript and torch.fx.
        self.classifier_index = len(self.classifier) - 1
        if init_weights:
            self._init_weights()
        self._set_default_cfg(vgg_arch(layers, batch_norm), stem)

    def get_classifier(self) -> nn.Module:
        """The final layer (Linear, or Identity when ``num_classes == 0``)."""
        return self.classifier[self.classifier_index]

    def _replace_classifier(self, module: nn.Module) -> None:
        self.classifier[self.classifier_index] = module

    def _remove_head(self) -> None:
        self.classifier = nn.Sequential(nn.Identity())
        self.classifier_index = 0
        super()._remove_head()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """The first convolution, then one group per layer of ``features`` (timm's grouping)."""
        return dict(stem=r"^features\.0", blocks=r"^features\.(\d+)")

    def _span(self, start: int, end: int, x: torch.Tensor) -> torch.Tensor:
        for i in range(start, end + 1):
            x = self.features[i](x)
        return x

    def _stages(self) -> Stages:
        starts = [0, *(e + 1 for e in self.feature_ends[:-1])]
        last = len(self.features) - 1
        spans = zip(starts, self.feature_ends, strict=True)
        return [[partial(self._span, s, min(e, last))] if s <= last else [] for s, e in spans]

    def _prune_stages(self, last: int) -> None:
        self.features = nn.Sequential(*list(self.features)[: self.feature_ends[last] + 1])

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, run the hidden layers and, unless ``pre_logits``, the final layer."""
        x = self._flatten(self.avgpool(x))
        for i, layer in enumerate(self.classifier):
            if i < self.classifier_index or not pre_logits:
                x = layer(x)
        return x


def make_vgg(cfg: str | Sequence[LayerSpec] = "D", batch_norm: bool = False, **kwargs: Any) -> VGG:
    """A VGG from any config: a letter of the paper's Table 1 (``"A"``, ``"A-LRN"``, ``"B"`` to ``"E"``) or a list
    such as the course's ``[64, "M", 128, "M", ...]``."""
    return build_model(VGG, "vgg", {"cfg": cfg, "batch_norm": batch_norm, **kwargs})  # type: ignore[return-value]


def _vgg(arch: str, kwargs: dict[str, Any]) -> VGG:
    cfg, batch_norm = VGG_ARCHS[arch]
    return build_model(VGG, arch, kwargs, cfg=cfg, batch_norm=batch_norm)  # type: ignore[return-value]


register_family(
    globals(),
    {
        "vgg11": "VGG-11 (config A, 11 weight layers).",
        "vgg11_lrn": "VGG-11 with local response normalisation after the first conv (config A-LRN).",
        "vgg13": "VGG-13 (config B, 13 weight layers).",
        "vgg16c": "VGG-16 config C: 1x1 convolutions as the last conv of stages 3-5.",
        "vgg16": "VGG-16 (config D, 16 weight layers).",
        "vgg19": "VGG-19 (config E, 19 weight layers).",
        "vgg11_bn": "VGG-11 (config A) with batch normalisation after every conv.",
        "vgg13_bn": "VGG-13 (config B) with batch normalisation after every conv.",
        "vgg16c_bn": "VGG-16 config C (1x1 convs in stages 3-5) with batch normalisation after every conv.",
        "vgg16_bn": "VGG-16 (config D) with batch normalisation after every conv.",
        "vgg19_bn": "VGG-19 (config E) with batch normalisation after every conv.",
    },
    _vgg,
)
