"""The one preprocessing/config type: :class:`PretrainedCfg`, its limits and the normalisation constants.

A model's default ``pretrained_cfg``, a manifest entry's preprocessing fields and the ``zoo.pretrained_cfg``
of a safetensors header (or a ``config.json`` of a ``local-dir:``/``hf-hub:`` folder) are the same fields
with the same meaning, and :func:`check_preprocessing` is the one place that says what a valid value is.
The mean and standard deviation of every dataset zoo knows live here and nowhere else.

The source identity of a set of weights (:data:`SOURCE_KEYS`: the file, its hash, where it came from) is
part of a loaded model's cfg, as in timm, but never of a new file: :func:`without_source` drops it when the
head changes and when a model is saved.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from zoo.errors import ArgumentValueError, WeightsFileError, ZooError

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "INPUT_LIMITS", "INTERPOLATIONS", "MAX_CHANNELS", "MAX_INPUT_SIDE", "MAX_RESIZE_SIDE", "MNIST_MEAN", "MNIST_STD",
    "SOURCE_KEYS", "Interpolation", "PretrainedCfg", "check_preprocessing", "fit_channels", "input_size_within_limits",
    "without_source",
]  # fmt: skip

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
# Limits on what a file or the manifest may ask for: a header is untrusted input, and a 10^6-pixel side or a
# 10^4-channel mean would make zoo allocate what no image classifier needs.
MAX_INPUT_SIDE = 4096
MAX_RESIZE_SIDE = 8192  # the side an image is resized to before the centre crop: input side / crop_pct
MAX_CHANNELS = 1024  # multispectral inputs run to a few hundred bands
INPUT_LIMITS = f"at most {MAX_CHANNELS} channels and sides of at most {MAX_INPUT_SIDE} pixels"


def input_size_within_limits(size: Sequence[int]) -> bool:
    """Whether ``size`` ([channels, height, width] of positive ints) is within :data:`INPUT_LIMITS`: the one
    bound on an input for a file's config, the manifest, ``zoo info``/``zoo bench`` options and benchmarks."""
    return size[0] <= MAX_CHANNELS and max(size[1:]) <= MAX_INPUT_SIDE


SOURCE_KEYS = ("file", "sha256", "source", "url", "hf_hub_id", "hf_hub_filename", "tag")


def without_source(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the keys that name the file its weights came from (:data:`SOURCE_KEYS`)."""
    return {k: v for k, v in cfg.items() if k not in SOURCE_KEYS}


def fit_channels(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Normalisation constants with one value per input channel."""
    # For a channel count the statistics were not measured for, the mean over channels is the least
    # surprising choice.
    if len(values) == in_chans:
        return tuple(values)
    avg = round(sum(values) / len(values), 4)
    return (avg,) * in_chans


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_preprocessing(
    cfg: Mapping[str, Any], where: str = "the zoo metadata zoo.pretrained_cfg", error: type[ZooError] = WeightsFileError
) -> dict[str, Any]:
    """``cfg`` with every preprocessing value it has checked; ``error`` names ``where`` and the first one that is
    not sane: ``input_size`` [channels, height, width] of positive ints (at most ``MAX_CHANNELS`` channels and
    ``MAX_INPUT_SIDE`` pixels a side), ``mean`` and ``std`` finite with one value per channel and ``std > 0``,
    ``crop_pct`` in (0, 1] resizing to at most ``MAX_RESIZE_SIDE``, a known ``interpolation``, a
    non-negative ``num_classes`` (0: no classifier) and ``label_names`` a list of strings. Absent keys are
    not checked."""
    out = dict(cfg)
    size = out.get("input_size")
    if size is not None:
        ints = isinstance(size, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        if not (ints and len(size) == 3 and min(size) > 0):
            raise error(f"{where} has input_size={size!r}: it must be [channels, height, width] of positive ints")
        if not input_size_within_limits(size):
            raise error(
                f"{where} has input_size={list(size)}: sides of at most {MAX_INPUT_SIDE} pixels and at most "
                f"{MAX_CHANNELS} channels"
            )
    for key in ("mean", "std"):
        values = out.get(key)
        if values is None:
            continue
        if not (isinstance(values, (list, tuple)) and values and all(_is_number(v) for v in values)):
            raise error(f"{where} has {key}={values!r}: it must be a list of finite numbers")
        if key == "std" and not all(v > 0 for v in values):
            raise error(f"{where} has std={list(values)!r}: every value must be positive")
        if size is not None and len(values) != size[0]:
            raise error(f"{where} has {key}={list(values)} for {size[0]} input channel(s): one value per channel")
    crop = out.get("crop_pct")
    if crop is not None and not (_is_number(crop) and 0 < crop <= 1):
        raise error(f"{where} has crop_pct={crop!r}: it must be in (0, 1]")
    if crop is not None and size is not None and max(size[1:]) / crop > MAX_RESIZE_SIDE:
        raise error(
            f"{where} has crop_pct={crop!r}: with input_size {list(size)} it resizes beyond {MAX_RESIZE_SIDE} pixels"
        )
    if out.get("interpolation") is not None and out["interpolation"] not in INTERPOLATIONS:
        raise error(f"{where} has interpolation={out['interpolation']!r}: use {', '.join(INTERPOLATIONS)}")
    classes = out.get("num_classes")
    if classes is not None and not (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 0):
        raise error(f"{where} has num_classes={classes!r}: it must be a non-negative int")
    labels = out.get("label_names")
    if labels is not None and not (isinstance(labels, (list, tuple)) and all(isinstance(n, str) for n in labels)):
        raise error(f"{where} has label_names of type {type(labels).__name__}: it must be a list of names")
    return out


@dataclass(frozen=True)
class PretrainedCfg:
    """A model's default preprocessing and head description, field for field timm's ``pretrained_cfg``.

    ``pool_size`` is the spatial size of ``forward_features``' output at ``input_size``;
    ``fixed_input_size`` says the model takes no other size. Weights may replace the preprocessing
    (``zoo.pretrained``); the model keeps the result as the plain dict :meth:`to_dict` gives. Constructing
    one checks its preprocessing with :func:`check_preprocessing`.
    """

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
        # The checked fields only (not asdict's deep copy): every model build and `import zoo` make a few of these.
        checked = ("input_size", "mean", "std", "crop_pct", "interpolation", "num_classes", "label_names")
        values = {k: getattr(self, k) for k in checked}
        check_preprocessing(values, "PretrainedCfg", error=ArgumentValueError)

    def to_dict(self) -> dict[str, Any]:
        """The dict form models carry as ``pretrained_cfg``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> PretrainedCfg:
        """The fields of ``cfg`` this class knows (JSON lists become tuples), checked; other keys are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in names}
        return cls(**values)

    def for_model(self, in_chans: int, num_classes: int, pool_size: tuple[int, int] | None) -> PretrainedCfg:
        """This config adapted to a model's input channels, class count and feature-map size."""
        return dataclasses.replace(
            self,
            input_size=(in_chans, *self.input_size[1:]),
            mean=fit_channels(self.mean, in_chans),
            std=fit_channels(self.std, in_chans),
            num_classes=num_classes,
            pool_size=pool_size,
        )
