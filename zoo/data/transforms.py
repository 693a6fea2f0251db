"""Preprocessing that travels with the weights (``create_transform(model.pretrained_cfg)``), and the
per-sample transforms of image folders too large to be held as tensors.

The eval transform is timm's and torchvision's: resize the shorter side to ``floor(size / crop_pct)``, take the
centre ``size`` crop, scale to [0, 1] and normalise. It is written here on torchvision alone because importing
``timm.data`` (which imports every timm model) costs about a second more: ``zoo predict`` and
``create_model(pretrained=True)`` + ``create_transform`` do without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zoo.errors import DataError
from zoo.models.cfg import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS
from zoo.utils import checks
from zoo.utils.checks import Invalid, is_number


def to_8_bit(img: Any) -> Any:
    """A 16-bit, 32-bit integer or float grey image as an 8-bit ``L`` image (others as given), scaled rather
    than clipped at 255 as Pillow's own conversion does; NaN or infinite pixels are a DataError."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return img
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{np.count_nonzero(~np.isfinite(values))} of its pixels are NaN or infinite")
    # 16-bit values map 65535 -> 255; 32-bit integers are taken as 16-bit and floats as [0, 1] where they fit,
    # and are otherwise scaled from their own range.
    if mode.startswith("I;16") or (mode == "I" and values.min(initial=0) >= 0 and values.max(initial=0) <= 65535):
        scaled = values / 257.0
    elif mode == "F" and values.min(initial=0) >= 0 and values.max(initial=0) <= 1:
        scaled = values * 255.0
    else:
        low, high = values.min(initial=0), values.max(initial=0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Any) -> Any:
    """``img.convert("RGB")``, as torchvision's ImageFolder reads an image, after :func:`to_8_bit`."""
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
    """The resize before the centre crop: ``floor(img_size / crop_pct)``."""
    # The tolerance keeps a crop_pct stored as a float (224/232 = 0.96551...) from landing one pixel short.
    return int(math.floor(img_size / crop_pct + 1e-6))


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
        cfg: dict[str, Any] = {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        cfg["crop_pct"] = 0.875
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
    """The preprocessing of a model's weights (``model.pretrained_cfg`` or the model), or timm's ``create_transform``
    called with its arguments, which replace the cfg's; other timm arguments, or a crop mode other than ``center``,
    hand the call to timm. Eval: Resize -> CenterCrop -> Normalize; training: RandomResizedCrop -> flip -> Normalize.
    """
    training = training if is_training is None else bool(is_training)
    overrides = {"input_size": input_size, "interpolation": interpolation, "mean": mean, "std": std}
    cfg = _timm_style_cfg(pretrained_cfg, {**overrides, "crop_pct": crop_pct, "crop_mode": crop_mode})
    channels, height, width = checks.input_size("input_size", tuple(cfg.get("input_size") or ()))
    for name in ("mean", "std"):
        if len(cfg.get(name) or ()) != channels:
            raise Invalid(name, cfg.get(name), f"needs one value per input channel ({channels})")
    mean, std, crop = tuple(cfg["mean"]), tuple(cfg["std"]), cfg.get("crop_pct") or 1.0
    if not (is_number(crop) and 0 < crop <= 1):
        raise Invalid("crop_pct", crop, "must be in (0, 1]")
    if timm_kwargs or (cfg.get("crop_mode") or "center") != "center":
        from timm.data import create_transform as timm_create_transform

        return timm_create_transform(
            input_size=(channels, height, width),
            is_training=training,
            hflip=hflip,
            scale=scale,
            interpolation=cfg.get("interpolation") or "bilinear",
            mean=mean,
            std=std,
            crop_pct=crop,
            crop_mode=cfg.get("crop_mode") or "center",
            **timm_kwargs,
        )
    from torchvision import transforms as T

    interpolation = checks.one_of("interpolation", cfg.get("interpolation") or "bilinear", INTERPOLATIONS)
    interp = T.InterpolationMode[interpolation.upper()]
    steps: list[Any] = [ConvertMode("L" if channels == 1 else "RGB")]
    if training:
        steps.append(T.RandomResizedCrop((height, width), scale=scale, interpolation=interp, antialias=True))
        if hflip > 0:
            steps.append(T.RandomHorizontalFlip(hflip))
    else:
        # A square input resizes the shorter side, keeping the aspect ratio.
        size = resize_size(height, crop) if height == width else (resize_size(height, crop), resize_size(width, crop))
        steps += [T.Resize(size, interpolation=interp, antialias=True), T.CenterCrop((height, width))]
    return T.Compose([*steps, ToFloatTensor(), T.Normalize(mean=mean, std=std)])


def posterize_keep_one_bit(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize, keeping at least one bit per channel."""
    # timm lets the end of the magnitude range ask for 0 bits (PosterizeIncreasing at magnitude 10, which
    # rand-m9-mstd0.5 reaches in about 2 % of draws); Pillow 13 raises ValueError for it, which killed a DataLoader
    # worker about once in 700 images. One bit is what the reference RandAugment keeps at level 0.
    from timm.data.auto_augment import posterize

    return posterize(img, max(1, int(bits_to_keep)), **kwargs)


def keep_one_bit(transform: Any) -> Any:
    """Replace timm's posterize in every RandAugment/AutoAugment/AugMix op inside ``transform`` (in place)
    with :func:`posterize_keep_one_bit`; returns ``transform``."""
    from timm.data import auto_augment as aa

    pending = [transform]
    while pending:
        t = pending.pop()
        # RandAugment and AugMix hold ops; AutoAugment a list of sub-policies of ops; Compose transforms.
        ops = [*(getattr(t, "ops", None) or ()), *(op for sub in getattr(t, "policy", None) or () for op in sub)]
        for op in ops:
            if getattr(op, "aug_fn", None) is aa.posterize:
                op.aug_fn = posterize_keep_one_bit
        pending.extend(getattr(t, "transforms", None) or ())
    return transform


@dataclass
class Augment:
    """Training augmentation, from the recipe: translation/crop padding, flip, RandAugment."""

    crop_pad: int = 0
    hflip: float = 0.0
    rand_augment: str = ""


def folder_transforms(
    cfg: dict[str, Any], aug: Augment, eval_transform: Callable | None = None
) -> tuple[Callable, Callable]:
    """The (train, eval) transforms of a streamed image folder at the model's input size and normalisation:
    timm's training transform with ``aug``, and :func:`create_transform`'s eval transform (or ``eval_transform``)."""
    from timm.data import create_transform as timm_create_transform

    size, interpolation = tuple(cfg["input_size"]), cfg.get("interpolation") or "bilinear"
    train = timm_create_transform(
        size,
        is_training=True,
        hflip=aug.hflip,
        auto_augment=aug.rand_augment or None,
        color_jitter=0.0,
        interpolation=interpolation,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    # timm's default crop_pct where the model's cfg has none.
    evaluated = {**cfg, "input_size": size, "interpolation": interpolation, "crop_pct": cfg.get("crop_pct") or 0.875}
    return keep_one_bit(train), eval_transform or create_transform(evaluated)
