"""The seed course's MNIST CNNs (Lab10-2 and the deeper Lab10-3 network), for 28x28 grey images.

``mnist_cnn``: two blocks of 3x3 conv (padding 1), ReLU and 2x2 max-pool (1->32->64 channels), then a
Linear 7*7*64 = 3136 -> 10. ``mnist_cnn_deep`` adds a third block of 128 channels (its pool pads by one,
7 -> 4) and a 625-wide hidden layer with dropout. Module names are the course's (``layer1``, ``fc`` ...).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from zoo.models.base import MNIST_MEAN, MNIST_STD, build_model, check_common, make_pretrained_cfg
from zoo.registry import register_model

__all__ = ["MnistCNN", "MnistDeepCNN"]


def _block(in_ch: int, out_ch: int, pool_padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2, padding=pool_padding),
    )


def _mnist_cfg(in_chans: int, num_classes: int, classifier: str) -> dict[str, Any]:
    return make_pretrained_cfg(
        input_size=(in_chans, 28, 28), mean=MNIST_MEAN, std=MNIST_STD, crop_pct=1.0,
        num_classes=num_classes, first_conv="layer1.0", classifier=classifier,
    )  # fmt: skip


class _MnistBase(nn.Module):
    """Shared head handling: the classifier is ``self.<classifier_name>``."""

    classifier_name = "fc"

    def get_classifier(self) -> nn.Module:
        """The final layer (Linear, or Identity when ``num_classes == 0``)."""
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a fresh one for ``num_classes`` (0 removes it)."""
        check_common(num_classes, self.in_chans)
        self.num_classes = num_classes
        setattr(self, self.classifier_name, self._make_fc(num_classes))
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes, "label_names": None}

    def _make_fc(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        # The course initialises its classifiers with Xavier-uniform.
        nn.init.xavier_uniform_(fc.weight)
        return fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class MnistCNN(_MnistBase):
    """Lab10-2's CNN: conv 1->32->64 (3x3, pad 1, ReLU, 2x2 max-pool each), Linear 3136 -> 10."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        check_common(num_classes, in_chans)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.layer1 = _block(in_chans, 32)
        self.layer2 = _block(32, 64)
        self.num_features = 7 * 7 * 64
        self.fc = self._make_fc(num_classes)
        self.pretrained_cfg = _mnist_cfg(in_chans, num_classes, "fc")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 64x7x7 feature map."""
        return self.layer2(self.layer1(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Flatten and, unless ``pre_logits``, classify."""
        x = torch.flatten(x, 1)
        return x if pre_logits else self.fc(x)


class MnistDeepCNN(_MnistBase):
    """Lab10-3's deeper CNN: a third 128-channel block and a 625-wide hidden layer with dropout."""

    classifier_name = "fc2"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, drop_rate: float = 0.5) -> None:
        super().__init__()
        check_common(num_classes, in_chans, drop_rate)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.layer1 = _block(in_chans, 32)
        self.layer2 = _block(32, 64)
        self.layer3 = _block(64, 128, pool_padding=1)
        hidden = nn.Linear(4 * 4 * 128, 625)
        nn.init.xavier_uniform_(hidden.weight)
        self.layer4 = nn.Sequential(hidden, nn.ReLU(), nn.Dropout(p=drop_rate))
        self.num_features = 625
        self.fc2 = self._make_fc(num_classes)
        self.pretrained_cfg = _mnist_cfg(in_chans, num_classes, "fc2")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128x4x4 feature map."""
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Flatten, the 625-wide hidden layer and, unless ``pre_logits``, the classifier."""
        x = self.layer4(torch.flatten(x, 1))
        return x if pre_logits else self.fc2(x)


@register_model
def mnist_cnn(**kwargs: Any) -> MnistCNN:
    """The seed course's first CNN (Lab10-2) for 28x28 MNIST digits."""
    return build_model(MnistCNN, "mnist_cnn", kwargs)  # type: ignore[return-value]


@register_model
def mnist_cnn_deep(**kwargs: Any) -> MnistDeepCNN:
    """The seed course's deeper CNN (Lab10-3): three conv blocks and a 625-wide hidden layer."""
    return build_model(MnistDeepCNN, "mnist_cnn_deep", kwargs)  # type: ignore[return-value]
