"""Preprocessing that travels with the weights (``create_transform(model.pretrained_cfg)``), the per-sample
transforms of streamed image folders, and the bound on an image's size that every image reader checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zoo.errors import DataError
from zoo.models.cfg import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS
from zoo.utils import checks
from zoo.utils.checks import MAX_RESIZE_SIDE, Invalid

# An image's side, before and after a transform's resize: Pillow bounds the pixels (MAX_IMAGE_PIXELS), not the
# side, and a 1 x 150,000,000 PNG of 68 bytes, resized to a 256-pixel shorter side, would be 256 x 3.8e10.
MAX_IMAGE_SIDE = 4 * MAX_RESIZE_SIDE  # 32,768: a 200-megapixel camera's 16,320 fits


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
    low, high = values.min(initial=0), values.max(initial=0)
    # 32-bit integers are taken as 16-bit and floats as [0, 1] where they fit, else scaled from their own range.
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


class ImageTooLarge(DataError):
    """An image whose side, or whose side once a transform resizes it, exceeds :data:`MAX_IMAGE_SIDE`."""


def check_image_size(image: Any, resize: Any = None, where: object = "image") -> Any:
    """``image``, opened but not decoded, if its sides and its longer side once ``resize`` (an int, or a transform
    whose Resize scales the shorter side) resizes it are at most MAX_IMAGE_SIDE; else ImageTooLarge naming ``where``."""
    if not isinstance(resize, int):  # a transform: the side its Resize (if any) scales the shorter side to
        sizes = [getattr(t, "size", None) for t in getattr(resize, "transforms", ()) if type(t).__name__ == "Resize"]
        sizes = [s if isinstance(s, int) else s[0] for s in sizes if isinstance(s, int) or len(s or ()) == 1]
        resize = sizes[0] if sizes else None
    width, height = image.size
    longer, shorter = max(width, height), max(min(width, height), 1)
    resized = longer if resize is None else math.ceil(longer * resize / shorter)
    if max(longer, resized) > MAX_IMAGE_SIDE:
        why = f"its side is {longer:,} pixels" + (f", {resized:,} once resized" if resize else "")
        raise ImageTooLarge(f"{where}: a {width}x{height} image: {why}; zoo takes sides of at most {MAX_IMAGE_SIDE:,}")
    return image


class ImageStep:
    """A step of :func:`create_transform` that takes a PIL image or a uint8 tensor: ``"RGB"`` or ``"L"`` converts a
    PIL image's mode (tensors pass); ``"float"`` gives a float tensor in [0, 1], as torchvision's transforms do."""

    def __init__(self, to: str) -> None:
        self.to = to

    def __call__(self, img: Any) -> Any:
        if self.to != "float":
            return img if isinstance(img, torch.Tensor) or img.mode == self.to else img.convert(self.to)
        from torchvision.transforms import functional as F

        return F.convert_image_dtype(img if isinstance(img, torch.Tensor) else F.pil_to_tensor(img), torch.float)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to!r})"


def resize_size(img_size: int, crop_pct: float) -> int:
    """The resize before the centre crop: ``floor(img_size / crop_pct)``."""
    # The tolerance keeps a crop_pct stored as a float (224/232 = 0.96551...) from landing one pixel short.
    return int(math.floor(img_size / crop_pct + 1e-6))


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
    with its arguments (other timm arguments, or a crop mode not ``center``, hand the call to timm)."""
    training = training if is_training is None else bool(is_training)
    if isinstance(pretrained_cfg, (int, tuple, list)):  # timm's positional input_size
        if input_size is not None:
            raise TypeError("create_transform got input_size twice (positionally and by keyword)")
        input_size, pretrained_cfg = pretrained_cfg, None
    if pretrained_cfg is None:  # timm's own call: its defaults for what is not given
        cfg: dict[str, Any] = dict(input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875)
    else:
        cfg = dict(getattr(pretrained_cfg, "pretrained_cfg", pretrained_cfg))
    if input_size is not None:  # timm's keyword arguments win over the cfg's entries
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        channels = int(cfg["input_size"][0]) if cfg.get("input_size") else 3
        cfg["input_size"] = size if len(size) == 3 else (channels, *size)
    given = {"interpolation": interpolation, "mean": mean, "std": std, "crop_pct": crop_pct, "crop_mode": crop_mode}
    cfg.update({k: v for k, v in given.items() if v is not None})
    channels, height, width = checks.input_size("input_size", tuple(cfg.get("input_size") or ()))
    for name in ("mean", "std"):
        if len(cfg.get(name) or ()) != channels:
            raise Invalid(name, cfg.get(name), f"needs one value per input channel ({channels})")
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    crop = checks.number_in("crop_pct", cfg.get("crop_pct") or 1.0, 1 / MAX_RESIZE_SIDE, 1.0)
    if timm_kwargs or (cfg.get("crop_mode") or "center") != "center":
        from timm.data import create_transform as timm_create_transform

        options = dict(hflip=hflip, scale=scale, mean=mean, std=std, crop_pct=crop, **timm_kwargs)
        options.update(interpolation=cfg.get("interpolation") or "bilinear", crop_mode=cfg.get("crop_mode") or "center")
        return timm_create_transform((channels, height, width), training, **options)
    from torchvision import transforms as T  # not timm.data, which imports every timm model: a second more

    interpolation = checks.one_of("interpolation", cfg.get("interpolation") or "bilinear", INTERPOLATIONS)
    interp = T.InterpolationMode[interpolation.upper()]
    steps: list[Any] = [ImageStep("L" if channels == 1 else "RGB")]
    if training:
        steps.append(T.RandomResizedCrop((height, width), scale=scale, interpolation=interp, antialias=True))
        if hflip > 0:
            steps.append(T.RandomHorizontalFlip(hflip))
    else:
        # A square input resizes the shorter side, keeping the aspect ratio.
        size = resize_size(height, crop) if height == width else (resize_size(height, crop), resize_size(width, crop))
        steps += [T.Resize(size, interpolation=interp, antialias=True), T.CenterCrop((height, width))]
    return T.Compose([*steps, ImageStep("float"), T.Normalize(mean=mean, std=std)])


def posterize_keep_one_bit(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize, keeping at least one bit per channel."""
    # timm's PosterizeIncreasing asks for 0 bits at magnitude 10 (2 % of rand-m9-mstd0.5's draws), which Pillow 13
    # refuses with a ValueError that killed a DataLoader worker; the reference RandAugment keeps one bit at level 0.
    from timm.data.auto_augment import posterize

    return posterize(img, max(1, int(bits_to_keep)), **kwargs)


@dataclass
class Augment:
    """Training augmentation, from the recipe: translation/crop padding, flip, RandAugment."""

    crop_pad: int = 0
    hflip: float = 0.0
    rand_augment: str = ""


def folder_transforms(
    cfg: dict[str, Any], aug: Augment, eval_transform: Callable | None = None
) -> tuple[Callable, Callable]:
    """A streamed folder's (train, eval) transforms: timm's training one with ``aug``, and create_transform's."""
    from timm.data import auto_augment

    train = create_transform(cfg, True, hflip=aug.hflip, auto_augment=aug.rand_augment or None, color_jitter=0.0)
    pending = [train]
    while pending:  # timm's posterize replaced in each op: RandAugment's and AugMix's, AutoAugment's sub-policies'
        t = pending.pop()
        ops = [*(getattr(t, "ops", None) or ()), *(op for sub in getattr(t, "policy", None) or () for op in sub)]
        for op in ops:
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = posterize_keep_one_bit
        pending.extend(getattr(t, "transforms", None) or ())
    # timm's default crop_pct where the model's cfg has none.
    return train, eval_transform or create_transform({**cfg, "crop_pct": cfg.get("crop_pct") or 0.875})
