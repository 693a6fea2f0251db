"""The course's MNIST CNN (Lab10-1 to Lab10-3) and a deeper variant, for 28x28 grey images. Both flatten the
last feature map as the course does (``global_pool=""``); a pooling type pools to that grid first."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from zoo.models.base import Stages, ZooModel, build_model, family_cfgs, make_pool, register_family
from zoo.models.cfg import MNIST_MEAN, MNIST_STD, PretrainedCfg


def _block(in_ch: int, out_ch: int, pool_padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2, padding=pool_padding),
    )


def _block_info(widths: tuple[int, ...]) -> list[dict[str, Any]]:
    return [dict(num_chs=w, reduction=2 ** (i + 1), module=f"layer{i + 1}") for i, w in enumerate(widths)]


_MNIST_CFG = dict(input_size=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD, crop_pct=1.0, num_classes=10)
_STEM_CFGS = {"mnist": PretrainedCfg(**_MNIST_CFG, first_conv="layer1.0", fixed_input_size=True)}
# The default weights' preprocessing where it differs from the stem's: tools/gen_default_cfgs.py writes it.
_WEIGHTS_CFGS: dict[str, dict[str, dict[str, Any]]] = {}
default_cfgs = {
    **family_cfgs(["mnist_cnn"], _STEM_CFGS, _WEIGHTS_CFGS),
    **family_cfgs(["mnist_cnn_deep"], {"mnist": replace(_STEM_CFGS["mnist"], classifier="fc2")}, _WEIGHTS_CFGS),
}


class _MnistBase(ZooModel):
    """What both course CNNs share: conv blocks ``layer1..``, a flattening head with a Xavier-initialised classifier."""

    default_cfgs = default_cfgs
    grid_head = True
    pool_attr = "pool"
    classifier_init = "xavier"

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """The first conv block, then one group per block."""
        return dict(stem=r"^layer1\.", blocks=r"^layer(\d+)\.")

    def _stages(self) -> Stages:
        return [[getattr(self, f"layer{i + 1}")] for i in range(len(self.feature_info))]

    def _prune_stages(self, last: int) -> None:
        for i in range(last + 1, len(self.feature_info)):
            setattr(self, f"layer{i + 1}", nn.Sequential())


class MnistCNN(_MnistBase):
    """Lab10-2's CNN: conv 1->32->64 (3x3, pad 1, ReLU, 2x2 max-pool each), Linear 3136 -> 10."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, global_pool: str = "") -> None:
        super().__init__()
        self._setup(num_classes, in_chans, 0.0, global_pool, head_grid=7)
        self.layer1 = _block(in_chans, 32)
        self.layer2 = _block(32, 64)
        self.feature_info = _block_info((32, 64))
        self.pool = make_pool(global_pool, self.head_grid)
        self.num_features, self.head_hidden_size = 64, 64 * 7 * 7
        self.fc = self._new_classifier(num_classes)
        self._set_default_cfg("mnist_cnn", "mnist")

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Flatten (after pooling, if ``global_pool`` asks for it) and, unless ``pre_logits``, classify."""
        x = self._flatten(self.pool(x))
        return x if pre_logits else self.fc(x)


class MnistDeepCNN(_MnistBase):
    """A deeper variant of the course's CNN: a third 128-channel block and a 625-wide hidden layer with dropout."""

    classifier_attr = "fc2"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, drop_rate: float = 0.5, global_pool: str = "") -> None:
        super().__init__()
        self._setup(num_classes, in_chans, drop_rate, global_pool, head_grid=4)
        self.layer1 = _block(in_chans, 32)
        self.layer2 = _block(32, 64)
        self.layer3 = _block(64, 128, pool_padding=1)
        self.feature_info = _block_info((32, 64, 128))
        self.pool = make_pool(global_pool, self.head_grid)
        hidden = nn.Linear(4 * 4 * 128, 625)
        nn.init.xavier_uniform_(hidden.weight)
        self.layer4 = nn.Sequential(hidden, nn.ReLU(), nn.Dropout(p=drop_rate))
        self.num_features, self.head_hidden_size = 128, 625
        self.fc2 = self._new_classifier(num_classes)
        self._set_default_cfg("mnist_cnn_deep", "mnist")

    def _remove_head(self) -> None:
        self.layer4 = nn.Sequential()
        super()._remove_head()

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (if ``global_pool`` asks), flatten, the 625-wide hidden layer and, unless ``pre_logits``, classify."""
        x = self.layer4(self._flatten(self.pool(x)))
        return x if pre_logits else self.fc2(x)


register_family(
    globals(),
    {
        "mnist_cnn": "The course's first CNN (Lab10-2) for 28x28 MNIST digits.",
        "mnist_cnn_deep": "A deeper variant of the course's CNN: three conv blocks and a 625-wide hidden layer.",
    },
    lambda arch, kwargs: build_model(MnistCNN if arch == "mnist_cnn" else MnistDeepCNN, arch, kwargs),
)
