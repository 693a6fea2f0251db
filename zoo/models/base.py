"""What every zoo model shares: argument checks, default preprocessing configs and the builder helper."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

STEMS = ("imagenet", "cifar")


def check_choice(param: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise a ValueError naming ``param`` and its allowed values if ``value`` is not one of them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{param}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def check_common(num_classes: int, in_chans: int, drop_rate: float = 0.0) -> None:
    """Check the arguments every model takes."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(
            f"num_classes={num_classes!r} is invalid: use a positive int, or 0 for a model without "
            "classifier that returns pooled features"
        )
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans={in_chans!r} is invalid: use an int >= 1 (1 for grey, 3 for RGB images)")
    if not 0.0 <= float(drop_rate) < 1.0:
        raise ValueError(f"drop_rate={drop_rate!r} is invalid: use a probability in [0, 1)")


def fit_channels(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Normalisation constants with one value per input channel."""
    # Normalisation constants must have one value per input channel; for a channel count the
    # statistics were not measured for, the mean over channels is the least surprising choice.
    if len(values) == in_chans:
        return tuple(values)
    avg = round(sum(values) / len(values), 4)
    return (avg,) * in_chans


def make_pretrained_cfg(
    *,
    input_size: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    num_classes: int,
    first_conv: str,
    classifier: str,
    interpolation: str = "bilinear",
    crop_pct: float = 0.875,
) -> dict[str, Any]:
    """A pretrained_cfg in timm's layout, holding the defaults until weights replace them."""
    in_chans = input_size[0]
    return {
        "architecture": None,
        "tag": None,
        "input_size": tuple(input_size),
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "crop_mode": "center",
        "mean": fit_channels(mean, in_chans),
        "std": fit_channels(std, in_chans),
        "num_classes": num_classes,
        "label_names": None,
        "first_conv": first_conv,
        "classifier": classifier,
    }


def build_model(model_cls: type[nn.Module], arch: str, kwargs: dict[str, Any], **fixed: Any) -> nn.Module:
    """Instantiate ``model_cls`` for the registered ``arch``.

    ``fixed`` holds what the architecture name decides (depth, block, config); ``kwargs`` comes from
    the user, so a keyword the model doesn't take, or one the name already fixes, is a TypeError
    that lists what the model accepts.
    """
    params = [
        name
        for name, p in inspect.signature(model_cls.__init__).parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    accepted = [p for p in params if p not in fixed]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"{arch}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted)}"
        )
    model = model_cls(**fixed, **kwargs)
    model.pretrained_cfg["architecture"] = arch
    return model


def make_classifier(num_features: int, num_classes: int) -> nn.Module:
    """A Linear head, or Identity when ``num_classes == 0`` (the model then returns pooled features)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
