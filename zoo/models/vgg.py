"""VGG: every configuration of Table 1 of Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (2014), with torchvision's layout.

With the ImageNet stem the module tree is torchvision's (``features``, ``avgpool``, ``classifier``), so
``state_dict()`` keys and shapes equal ``torchvision.models.vgg*``. The CIFAR stem keeps the same
``features`` but ends in a global pool and a 512-wide classifier instead of the 25088-wide layer.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    make_pretrained_cfg,
)
from zoo.registry import register_model

__all__ = ["VGG", "VGG_CONFIGS", "make_features", "make_vgg"]

# A config entry is one of: an int (3x3 conv with that many filters), "M" (2x2 max-pool),
# "LRN" (local response normalisation) or a (filters, kernel) pair for other kernel sizes.
LayerSpec = int | str | tuple[int, int]

# fmt: off
VGG_CONFIGS: dict[str, list[LayerSpec]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
# fmt: on


def _parse_spec(spec: LayerSpec, index: int) -> tuple[str, int, int]:
    if spec in ("M", "LRN"):
        return str(spec), 0, 0
    if isinstance(spec, bool):
        spec = None  # type: ignore[assignment]
    if isinstance(spec, int) and spec > 0:
        return "conv", spec, 3
    if (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in spec)
        and spec[1] % 2 == 1
    ):
        return "conv", spec[0], spec[1]
    raise ValueError(
        f"cfg[{index}]={spec!r} is not a VGG layer: use a positive int (3x3 conv), 'M' (max-pool), "
        "'LRN' (local response norm) or (filters, odd kernel size)"
    )


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
        try:
            return list(VGG_CONFIGS[cfg])
        except KeyError:
            raise ValueError(
                f"cfg={cfg!r} is not a VGG configuration; use one of {', '.join(VGG_CONFIGS)} "
                "or a list such as [64, 'M', 128, 'M', ...]"
            ) from None
    cfg = list(cfg)
    if not cfg:
        raise ValueError("cfg is empty: a VGG config needs at least one convolution")
    for i, spec in enumerate(cfg):
        _parse_spec(spec, i)
    if not any(_parse_spec(s, i)[0] == "conv" for i, s in enumerate(cfg)):
        raise ValueError(f"cfg={cfg!r} has no convolution")
    return cfg


class VGG(nn.Module):
    """VGG network for any layer config, with an ImageNet (torchvision) or CIFAR head."""

    def __init__(
        self,
        cfg: str | Sequence[LayerSpec] = "D",
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        drop_rate: float = 0.5,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        check_common(num_classes, in_chans, drop_rate)
        check_choice("stem", stem, STEMS)
        layers = _resolve_cfg(cfg)
        self.cfg = layers
        self.stem = stem
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        width = [s for i, s in enumerate(layers) if _parse_spec(s, i)[0] == "conv"][-1]
        width = width if isinstance(width, int) else width[0]
        # The CIFAR head rounds pooled sizes up so that 28x28 inputs (MNIST) survive five pools.
        self.features = make_features(layers, in_chans, batch_norm, ceil_mode=stem == "cifar")
        if stem == "imagenet":
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((7, 7))
            hidden, flat = 4096, width * 7 * 7
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            hidden, flat = 512, width
        self.num_features = hidden
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden),
            nn.ReLU(True),
            nn.Dropout(p=drop_rate),
            *([nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=drop_rate)] if stem == "imagenet" else []),
            nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity(),
        )
        classifier_key = f"classifier.{len(self.classifier) - 1}"
        if stem == "imagenet":
            self.pretrained_cfg = make_pretrained_cfg(
                input_size=(in_chans, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                num_classes=num_classes, first_conv="features.0", classifier=classifier_key,
            )  # fmt: skip
        else:
            self.pretrained_cfg = make_pretrained_cfg(
                input_size=(in_chans, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_pct=1.0,
                num_classes=num_classes, first_conv="features.0", classifier=classifier_key,
            )  # fmt: skip
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so that training from scratch behaves as it does there.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def get_classifier(self) -> nn.Module:
        """The final layer (Linear, or Identity when ``num_classes == 0``)."""
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a fresh one for ``num_classes`` (0 removes it)."""
        check_common(num_classes, self.in_chans)
        self.num_classes = num_classes
        last = len(self.classifier) - 1
        self.classifier[last] = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.normal_(self.classifier[last].weight, 0, 0.01)
            nn.init.constant_(self.classifier[last].bias, 0)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes, "label_names": None}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional feature map, before pooling."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, run the hidden layers and, unless ``pre_logits``, the final layer."""
        x = torch.flatten(self.avgpool(x), 1)
        x = self.classifier[:-1](x)
        return x if pre_logits else self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_vgg(cfg: str | Sequence[LayerSpec] = "D", batch_norm: bool = False, **kwargs: Any) -> VGG:
    """Build a VGG from any config: a letter of the paper's Table 1 (``"A"``, ``"A-LRN"``, ``"B"``,
    ``"C"``, ``"D"``, ``"E"``) or a list such as the seed course's ``[64, "M", 128, "M", ...]``."""
    return build_model(VGG, "vgg", {"cfg": cfg, "batch_norm": batch_norm, **kwargs})  # type: ignore[return-value]


def _vgg(arch: str, cfg: str, batch_norm: bool, kwargs: dict[str, Any]) -> VGG:
    return build_model(VGG, arch, kwargs, cfg=cfg, batch_norm=batch_norm)  # type: ignore[return-value]


@register_model
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11 (config A, 11 weight layers)."""
    return _vgg("vgg11", "A", False, kwargs)


@register_model
def vgg11_lrn(**kwargs: Any) -> VGG:
    """VGG-11 with local response normalisation after the first conv (config A-LRN)."""
    return _vgg("vgg11_lrn", "A-LRN", False, kwargs)


@register_model
def vgg13(**kwargs: Any) -> VGG:
    """VGG-13 (config B, 13 weight layers)."""
    return _vgg("vgg13", "B", False, kwargs)


@register_model
def vgg16c(**kwargs: Any) -> VGG:
    """VGG-16 config C: 1x1 convolutions as the last conv of stages 3-5."""
    return _vgg("vgg16c", "C", False, kwargs)


@register_model
def vgg16(**kwargs: Any) -> VGG:
    """VGG-16 (config D, 16 weight layers)."""
    return _vgg("vgg16", "D", False, kwargs)


@register_model
def vgg19(**kwargs: Any) -> VGG:
    """VGG-19 (config E, 19 weight layers)."""
    return _vgg("vgg19", "E", False, kwargs)


@register_model
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11 (config A) with batch normalisation after every conv."""
    return _vgg("vgg11_bn", "A", True, kwargs)


@register_model
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13 (config B) with batch normalisation after every conv."""
    return _vgg("vgg13_bn", "B", True, kwargs)


@register_model
def vgg16c_bn(**kwargs: Any) -> VGG:
    """VGG-16 config C (1x1 convs in stages 3-5) with batch normalisation after every conv."""
    return _vgg("vgg16c_bn", "C", True, kwargs)


@register_model
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16 (config D) with batch normalisation after every conv."""
    return _vgg("vgg16_bn", "D", True, kwargs)


@register_model
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19 (config E) with batch normalisation after every conv."""
    return _vgg("vgg19_bn", "E", True, kwargs)
