"""The one preprocessing/config type, :class:`PretrainedCfg` (a model's ``pretrained_cfg``, a manifest entry's and a
weights file's preprocessing), its check :func:`check_preprocessing` and the datasets' normalisation constants."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from zoo.errors import ArgumentValueError, WeightsFileError, ZooError
from zoo.utils import checks
from zoo.utils.checks import MAX_CHANNELS, MAX_NUM_CLASSES, MAX_RESIZE_SIDE, MIN_STD, Invalid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

Interpolation = Literal["nearest", "bilinear", "bicubic"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
# What a transform reads: the fields default weights give a bare model, and that weights may replace.
PREPROCESSING = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
# Where a model's weights came from: in a loaded model's cfg, as in timm, but never in a new file (without_source).
SOURCE_KEYS = ("file", "sha256", "source", "url", "hf_hub_id", "hf_hub_filename", "tag")


def without_source(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the keys that name the file its weights came from (:data:`SOURCE_KEYS`)."""
    return {k: v for k, v in cfg.items() if k not in SOURCE_KEYS}


def fit_channels(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Normalisation constants with one value per input channel (their mean, for a count they were not measured for)."""
    if len(values) == in_chans:
        return tuple(values)
    return (round(sum(values) / len(values), 4),) * in_chans


def check_preprocessing(
    cfg: Mapping[str, Any],
    where: str = "the zoo metadata zoo.pretrained_cfg",
    error: type[ZooError] = WeightsFileError,
    model_cfg: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``cfg`` as a dict once its preprocessing values are checked (absent ones are not): an ``error`` naming ``where``
    and the first bad field. ``model_cfg``, the cfg of the model ``cfg`` will be merged into, fills in ``input_size``
    (the channels mean/std must match, a fixed size) and ``crop_pct`` (side / crop_pct at most ``MAX_RESIZE_SIDE``)."""
    out, model_cfg = dict(cfg), model_cfg or {}
    with checks.reported(where, error):
        size = out.get("input_size")
        if size is not None:
            checks.input_size("input_size", size)
            fixed = model_cfg.get("fixed_input_size") and tuple(model_cfg["input_size"])
            if fixed and tuple(size[1:]) != fixed[1:]:
                raise Invalid("input_size", size, f"must be {list(fixed)}: the model takes no other size")
        channels = (size or model_cfg.get("input_size") or (None,))[0]
        for key in ("mean", "std"):
            values = out.get(key)
            if values is None:
                continue
            if not isinstance(values, (list, tuple)) or not 0 < len(values) <= MAX_CHANNELS:
                raise Invalid(key, values, "must be a list of finite numbers, one per channel")
            for v in values:
                checks.number_in(key, v, MIN_STD if key == "std" else None)  # a smaller std overflows float32
            if channels is not None and len(values) != channels:
                raise Invalid(key, values, f"must have one value per channel ({channels})")
        if out.get("crop_pct") is not None:
            checks.number_in("crop_pct", out["crop_pct"], 1 / MAX_RESIZE_SIDE, 1.0)
        if out.get("interpolation") is not None:
            checks.one_of("interpolation", out["interpolation"], INTERPOLATIONS)
        if out.get("num_classes") is not None:
            checks.int_in("num_classes", out["num_classes"], 0, MAX_NUM_CLASSES)
        labels = out.get("label_names")
        if labels is not None and not (isinstance(labels, (list, tuple)) and all(isinstance(n, str) for n in labels)):
            raise Invalid("label_names", labels, "must be a list of names")
        merged = {**model_cfg, **{k: v for k, v in out.items() if v is not None}}
        side, crop = max(merged.get("input_size", (0, 0, 0))[1:]), merged.get("crop_pct")
        if crop and side / crop > MAX_RESIZE_SIDE:
            raise Invalid("crop_pct", crop, f"with input side {side}, resizes beyond {MAX_RESIZE_SIDE} pixels")
    return out


@dataclass(frozen=True)
class PretrainedCfg:
    """A model's default preprocessing and head description, field for field timm's ``pretrained_cfg``: ``pool_size``
    is ``forward_features``' output size at ``input_size``; ``fixed_input_size`` says the model takes no other."""

    architecture: str | None = None
    tag: str | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: Interpolation = "bilinear"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    label_names: tuple[str, ...] | None = None
    first_conv: str = "conv1"
    classifier: str = "fc"
    pool_size: tuple[int, int] | None = None
    fixed_input_size: bool = False

    def __post_init__(self) -> None:
        # The checked fields only, not asdict's deep copy: every model build makes a few of these.
        checked = (*PREPROCESSING, "num_classes", "label_names")
        check_preprocessing({k: getattr(self, k) for k in checked}, "PretrainedCfg", ArgumentValueError)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> PretrainedCfg:
        """The fields of ``cfg`` this class knows (JSON lists become tuples), checked; other keys are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in names})


CIFAR_CFG = PretrainedCfg(input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_pct=1.0)
