"""Preprocessing that travels with the weights: ``create_transform(model.pretrained_cfg)``.

The eval transform is timm's and torchvision's: resize the shorter side to ``floor(size / crop_pct)``,
take the centre ``size`` crop, scale to [0, 1] and normalise with the weights' mean and std. For weights
converted from torchvision it gives exactly what ``Weights.transforms()`` gives.

torchvision is imported when a transform is created, not when zoo is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zoo.errors import ArgumentValueError, DataError
from zoo.models.cfg import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "Augment",
    "cifar_transform",
    "create_transform",
    "folder_transforms",
    "keep_one_bit",
    "posterize_keep_one_bit",
    "resize_size",
    "to_8_bit",
    "to_rgb",
]


def to_8_bit(img: Any) -> Any:
    """A high-bit-depth grey image (modes ``I;16*``, ``I``, ``F``) scaled to an 8-bit ``L`` image; others as given.

    Pillow's own conversion to ``L`` clips such images at 255, which turns a 16-bit image nearly white.
    16-bit values are divided by 257 (65535 -> 255); 32-bit integer images are taken as 16-bit when their
    values fit, float images as [0, 1] when they fit, and otherwise scaled from their own range. NaN or
    infinite pixels are a DataError (a ValueError): no scaling makes them an image.
    """
    import numpy as np
    from PIL import Image

    mode = img.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return img
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{np.count_nonzero(~np.isfinite(values))} of its pixels are NaN or infinite")
    if mode.startswith("I;16") or (mode == "I" and values.min(initial=0) >= 0 and values.max(initial=0) <= 65535):
        scaled = values / 257.0
    elif mode == "F" and values.min(initial=0) >= 0 and values.max(initial=0) <= 1:
        scaled = values * 255.0
    else:
        low, high = values.min(initial=0), values.max(initial=0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Any) -> Any:
    """``img.convert("RGB")`` (what torchvision's ImageFolder reads), after :func:`to_8_bit` for 16-bit and float
    images, which Pillow's own conversion turns nearly white."""
    return to_8_bit(img).convert("RGB")


class ConvertMode:
    """Convert a PIL image to ``mode`` ("RGB" or "L") so the channel count matches the model; tensors pass."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, img: Any) -> Any:
        convert = getattr(img, "convert", None)
        return convert(self.mode) if convert is not None and getattr(img, "mode", self.mode) != self.mode else img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


class ToFloatTensor:
    """PIL image or uint8 tensor -> float tensor in [0, 1], as torchvision's ``ImageClassification`` does."""

    def __call__(self, img: Any) -> torch.Tensor:
        from torchvision.transforms import functional as F

        if not isinstance(img, torch.Tensor):
            img = F.pil_to_tensor(img)
        return F.convert_image_dtype(img, torch.float)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resize_size(img_size: int, crop_pct: float) -> int:
    """The resize before the centre crop: ``floor(img_size / crop_pct)``.

    The small tolerance keeps a crop_pct stored as a float (224/232 = 0.96551...) from landing one
    pixel short of the size it was computed from.
    """
    return int(math.floor(img_size / crop_pct + 1e-6))


_CFG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def _timm_style_cfg(
    pretrained_cfg: Mapping[str, Any] | torch.nn.Module | int | Sequence[int] | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    """One preprocessing dict from a pretrained_cfg (or model) or timm's positional ``input_size``, and timm's
    keyword arguments, which win over the cfg's entries."""
    if isinstance(pretrained_cfg, (int, tuple, list)):
        if overrides.get("input_size") is not None:
            raise TypeError("create_transform got input_size twice (positionally and by keyword)")
        overrides["input_size"], pretrained_cfg = pretrained_cfg, None
    if pretrained_cfg is None:  # timm's own call: its defaults for what is not given
        cfg: dict[str, Any] = {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                               "crop_pct": 0.875}  # fmt: skip
    else:
        cfg = dict(getattr(pretrained_cfg, "pretrained_cfg", pretrained_cfg))
    size = overrides.pop("input_size", None)
    if size is not None:
        channels = int(cfg["input_size"][0]) if cfg.get("input_size") else 3
        if isinstance(size, int):
            size = (channels, size, size)
        elif len(size) == 2:
            size = (channels, *size)
        cfg["input_size"] = tuple(size)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def create_transform(
    pretrained_cfg: Mapping[str, Any] | torch.nn.Module | int | Sequence[int] | None = None,
    training: bool = False,
    *,
    hflip: float = 0.5,
    scale: tuple[float, float] = (0.08, 1.0),
    is_training: bool | None = None,
    input_size: int | Sequence[int] | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_pct: float | None = None,
    crop_mode: str | None = None,
    **timm_kwargs: Any,
):
    """The preprocessing of a model's weights (pass ``model.pretrained_cfg`` or the model), or timm's
    ``create_transform`` called with its own arguments.

    Eval (``training=False``): Resize(floor(size / crop_pct)) -> CenterCrop(size) -> float tensor ->
    Normalize(mean, std). Training: RandomResizedCrop(size, ``scale``) -> RandomHorizontalFlip(``hflip``)
    -> float tensor -> Normalize. Images are converted to RGB (or to grey for one-channel models).

    timm's signature works too: ``input_size`` (positional or keyword), ``is_training`` (``training``'s timm
    name), ``interpolation``, ``mean``, ``std``, ``crop_pct`` and ``crop_mode`` replace the cfg's values (with
    timm's defaults when no cfg is given: 224 px, ImageNet statistics, crop_pct 0.875). Any other timm argument
    (``auto_augment``, ``color_jitter``, ``re_prob``, ``no_aug``, ...) or a crop mode other than ``center``
    hands the resolved values to ``timm.data.create_transform``, so the result is timm's, its defaults included
    (e.g. colour jitter 0.4 when training).
    """
    training = training if is_training is None else bool(is_training)
    overrides = {"input_size": input_size, "interpolation": interpolation, "mean": mean, "std": std,
                 "crop_pct": crop_pct, "crop_mode": crop_mode}  # fmt: skip
    cfg = _timm_style_cfg(pretrained_cfg, overrides)
    try:
        channels, height, width = (int(v) for v in cfg["input_size"])
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    except (KeyError, TypeError, ValueError):
        raise ArgumentValueError(
            "create_transform needs a pretrained_cfg with input_size (C, H, W), mean and std, "
            f"such as model.pretrained_cfg; got {pretrained_cfg!r}"
        ) from None
    try:
        crop = float(cfg.get("crop_pct") or 1.0)
    except (TypeError, ValueError):
        raise ArgumentValueError(f"crop_pct={cfg.get('crop_pct')!r} must be in (0, 1]") from None
    if not 0 < crop <= 1:
        raise ArgumentValueError(f"crop_pct={crop!r} must be in (0, 1]")
    if len(mean) != channels or len(std) != channels:
        raise ArgumentValueError(f"mean {mean} and std {std} need one value per input channel ({channels})")
    if timm_kwargs or (cfg.get("crop_mode") or "center") != "center":
        from timm.data import create_transform as timm_create_transform

        return timm_create_transform(
            input_size=(channels, height, width), is_training=training, hflip=hflip, scale=scale,
            interpolation=cfg.get("interpolation") or "bilinear", mean=mean, std=std, crop_pct=crop,
            crop_mode=cfg.get("crop_mode") or "center", **timm_kwargs,
        )  # fmt: skip
    from torchvision import transforms as T

    name = str(cfg.get("interpolation") or "bilinear").upper()
    try:
        interp = T.InterpolationMode[name]
    except KeyError:
        raise ArgumentValueError(
            f"interpolation={cfg.get('interpolation')!r}; use bilinear, bicubic or nearest"
        ) from None

    steps: list[Any] = [ConvertMode("L" if channels == 1 else "RGB")]
    if training:
        steps += [T.RandomResizedCrop((height, width), scale=scale, interpolation=interp, antialias=True)]
        if hflip > 0:
            steps.append(T.RandomHorizontalFlip(hflip))
    else:
        if height == width:
            size: int | tuple[int, int] = resize_size(height, crop)  # shorter side, keeps aspect
        else:
            size = (resize_size(height, crop), resize_size(width, crop))
        steps += [T.Resize(size, interpolation=interp, antialias=True), T.CenterCrop((height, width))]
    steps += [ToFloatTensor(), T.Normalize(mean=mean, std=std)]
    return T.Compose(steps)


def posterize_keep_one_bit(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize, keeping at least one bit per channel.

    timm maps the magnitude to the bits kept linearly and lets the end of the range reach 0 bits:
    ``PosterizeIncreasing`` at magnitude 10 (which ``rand-m9-mstd0.5`` reaches whenever its Gaussian
    noise passes +1, about 2 % of draws) and ``Posterize`` below magnitude 2.5. Older Pillow turned 0 bits
    into a black image; recent Pillow (13 here) raises ``ValueError: bits must be between or equal to 1 and
    8``, which kills the DataLoader worker about once in 700 images, so any real epoch, while a test folder of
    a few dozen images rarely meets it. One bit is what the reference RandAugment code keeps at level 0.
    """
    from timm.data.auto_augment import posterize

    return posterize(img, max(1, int(bits_to_keep)), **kwargs)


def keep_one_bit(transform: Any) -> Any:
    """Replace timm's posterize in every RandAugment/AutoAugment/AugMix op inside ``transform`` (in place)
    with :func:`posterize_keep_one_bit`; returns ``transform``."""
    from timm.data import auto_augment as aa

    def fix(op: Any) -> None:
        if getattr(op, "aug_fn", None) is aa.posterize:
            op.aug_fn = posterize_keep_one_bit

    pending = [transform]
    while pending:
        t = pending.pop()
        for op in getattr(t, "ops", None) or ():  # RandAugment, AugMix
            fix(op)
        for sub_policy in getattr(t, "policy", None) or ():  # AutoAugment: a list of sub-policies of ops
            for op in sub_policy:
                fix(op)
        pending.extend(getattr(t, "transforms", None) or ())  # Compose
    return transform


@dataclass
class Augment:
    """Training augmentation, from the recipe: translation/crop padding, flip, RandAugment."""

    crop_pad: int = 0
    hflip: float = 0.0
    rand_augment: str = ""


def cifar_transform(train: bool, aug: Augment, mean: Sequence[float], std: Sequence[float]) -> Callable:
    from torchvision import transforms as T

    ops: list[Callable] = []
    if train:
        if aug.crop_pad:
            ops.append(T.RandomCrop(32, padding=aug.crop_pad))
        if aug.hflip:
            ops.append(T.RandomHorizontalFlip(aug.hflip))
        if aug.rand_augment:
            from timm.data.auto_augment import rand_augment_transform

            ra = rand_augment_transform(aug.rand_augment, {"img_mean": tuple(round(255 * m) for m in mean)})
            ops.append(keep_one_bit(ra))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def folder_transforms(
    cfg: dict[str, Any], aug: Augment, eval_transform: Callable | None = None
) -> tuple[Callable, Callable]:
    """timm's train and eval transforms at the model's input size and normalisation."""
    from timm.data import create_transform

    size = tuple(cfg["input_size"])
    common = {
        "interpolation": cfg.get("interpolation", "bilinear"),
        "mean": tuple(cfg["mean"]),
        "std": tuple(cfg["std"]),
    }
    train_tf = keep_one_bit(
        create_transform(
            size, is_training=True, hflip=aug.hflip, auto_augment=aug.rand_augment or None, color_jitter=0.0, **common
        )
    )
    if eval_transform is None:
        eval_transform = create_transform(size, is_training=False, crop_pct=cfg.get("crop_pct", 0.875), **common)
    return train_tf, eval_transform
