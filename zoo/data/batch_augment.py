"""RandAugment on whole uint8 batches: timm's ``rand-*`` strings, applied image by image without PIL.

Every image draws what timm's PIL RandAugment draws for one image; the images that drew the same operation are
then transformed together as tensors, matching PIL's output to within one grey level (bilinear resampling only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from zoo.errors import ArgumentValueError

_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude 10 is the full range of each operation


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    # Each operation works on a few images (a slice of the batch): splitting that over threads costs more in
    # synchronisation than it saves, and several times more on cores shared with other processes (measured:
    # 12 ms a batch of 256 on one thread, 50-500 ms on two threads of a busy 2-core machine).
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _blend(degenerate: torch.Tensor, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, image, factor)``, one factor per image, truncated to uint8."""
    f = factor.view(-1, 1, 1, 1)
    out = degenerate.float() + f * (images.float() - degenerate.float())
    return out.clamp_(0, 255).to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion (ITU-R 601-2 luma), as float, keeping a channel axis of one."""
    if images.shape[1] == 1:
        return images.float()
    w = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (images.float() * w).sum(1, keepdim=True).round_()


def _color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(_grey(x).expand_as(x), x, factor)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True).add_(0.5).floor_()  # PIL: int(mean + 0.5)
    return _blend(mean.expand_as(x), x, factor)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, factor)


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13); the border keeps the original pixels.
    c = x.shape[1]
    kernel = torch.ones(c, 1, 3, 3, device=x.device)
    kernel[:, :, 1, 1] = 5.0
    smooth = F.conv2d(x.float(), kernel / 13.0, groups=c).round_()
    degenerate = x.float().clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, factor)


def _torchvision(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision's batched operation ``name`` (one without an argument), imported when first used."""

    def op(x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        return getattr(TF, name)(x)

    return op


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    bits = bits.clamp(1, 8).to(torch.int32)  # at least one bit: zero bits would black the image out
    mask = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8).view(-1, 1, 1, 1)
    return x & mask


def _solarize(x: torch.Tensor, thresh: torch.Tensor) -> torch.Tensor:
    t = thresh.view(-1, 1, 1, 1)
    return torch.where(x.int() >= t, 255 - x, x)


def _solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    added = (x.int() + add.view(-1, 1, 1, 1)).clamp_(max=255).to(torch.uint8)
    return torch.where(x < 128, added, x)


def _affine(x: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, data)`` per image: output pixel (x, y) samples the input at
    ``matrix @ (x, y, 1)`` (pixel coordinates, centres at +0.5), bilinear, ``fill`` outside."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=torch.float32) + 0.5,
        torch.arange(w, device=x.device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, h * w, 3)
    src = points @ matrix.transpose(1, 2)  # (n, h*w, 2) in pixels
    size = torch.tensor([w, h], device=x.device, dtype=torch.float32)
    # PIL fills a pixel whose source point falls outside the image and interpolates the others with the
    # border pixels repeated: a sharp edge, not a blend with the fill colour.
    inside = ((src >= 0) & (src < size)).all(dim=-1).view(n, 1, h, w)
    grid = (src / size * 2 - 1).view(n, h, w, 2)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    fill = fill[:c] if len(fill) >= c else fill[:1]
    images = torch.where(inside, out, fill.to(x.device).view(1, -1, 1, 1))
    return images.round_().clamp_(0, 255).to(torch.uint8)


def _matrices(n: int, device: torch.device) -> torch.Tensor:
    m = torch.zeros(n, 2, 3, device=device)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    return m


def _rotate(x: torch.Tensor, degrees: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    # PIL's rotate: counter-clockwise about the image centre.
    h, w = x.shape[2:]
    a = degrees.to(x.device) * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    m = _matrices(len(x), x.device)
    cx, cy = w / 2.0, h / 2.0
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    m[:, 0, 2] = cx - cos * cx + sin * cy
    m[:, 1, 2] = cy - sin * cx - cos * cy
    return _affine(x, m, fill)


def _shear(axis: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def op(x: torch.Tensor, factor: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        m = _matrices(len(x), x.device)
        m[:, axis, 1 - axis] = factor.to(x.device)  # x' = x + f*y (ShearX) or y' = y + f*x (ShearY)
        return _affine(x, m, fill)

    return op


def _translate(axis: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def op(x: torch.Tensor, pixels: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        m = _matrices(len(x), x.device)
        m[:, axis, 2] = pixels.to(x.device)
        return _affine(x, m, fill)

    return op


def _enhance(level: torch.Tensor, sign: torch.Tensor, increasing: bool) -> torch.Tensor:
    if increasing:  # 1 +- up to 0.9, at least 0.1
        return (1.0 + sign * level * 0.9).clamp(min=0.1)
    return level * 1.8 + 0.1


# name -> (operation, how the magnitude level (0..1) and a random sign give its argument; None: no argument).
# The level arguments are timm's LEVEL_TO_ARG functions, vectorised. Geometric operations also take the fill.
_ENHANCE = {"Color": _color, "Contrast": _contrast, "Brightness": _brightness, "Sharpness": _sharpness}
_OPS: dict[str, tuple[Callable, Callable | None, bool]] = {
    "AutoContrast": (_torchvision("autocontrast"), None, False),
    "Equalize": (_torchvision("equalize"), None, False),
    "Invert": (lambda x: 255 - x, None, False),
    "Rotate": (_rotate, lambda lv, s, size, hp: lv * 30.0 * s, True),
    "Posterize": (_posterize, lambda lv, s, size, hp: (lv * 4).floor(), False),
    "PosterizeIncreasing": (_posterize, lambda lv, s, size, hp: 4 - (lv * 4).floor(), False),
    "PosterizeOriginal": (_posterize, lambda lv, s, size, hp: (lv * 4).floor() + 4, False),
    "Solarize": (_solarize, lambda lv, s, size, hp: (lv * 256).floor().clamp(max=256), False),
    "SolarizeIncreasing": (_solarize, lambda lv, s, size, hp: 256 - (lv * 256).floor().clamp(max=256), False),
    "SolarizeAdd": (_solarize_add, lambda lv, s, size, hp: (lv * 110).floor().clamp(max=128), False),
    "Desaturate": (_color, lambda lv, s, size, hp: 1.0 - (0.5 + 0.5 * lv).clamp(0.5, 1.0), False),
    "ShearX": (_shear(0), lambda lv, s, size, hp: lv * 0.3 * s, True),
    "ShearY": (_shear(1), lambda lv, s, size, hp: lv * 0.3 * s, True),
    "TranslateXRel": (_translate(0), lambda lv, s, size, hp: lv * hp.get("translate_pct", 0.45) * s * size[1], True),
    "TranslateYRel": (_translate(1), lambda lv, s, size, hp: lv * hp.get("translate_pct", 0.45) * s * size[0], True),
    "TranslateX": (_translate(0), lambda lv, s, size, hp: lv * hp.get("translate_const", 0.45 * size[1]) * s, True),
    "TranslateY": (_translate(1), lambda lv, s, size, hp: lv * hp.get("translate_const", 0.45 * size[0]) * s, True),
}
for _name, _fn in _ENHANCE.items():
    _OPS[_name] = (_fn, lambda lv, s, size, hp: _enhance(lv, s, False), False)
    _OPS[_name + "Increasing"] = (_fn, lambda lv, s, size, hp: _enhance(lv, s, True), False)

SUPPORTED_OPS = tuple(sorted(_OPS))


class BatchRandAugment:
    """timm's RandAugment ``config`` on uint8 batches ``(N, C, H, W)``, each image with its own draws; ``fill``
    (0-255 per channel, timm's dataset mean) is what rotations, shears and translations leave behind."""

    def __init__(self, config: str, fill: Sequence[int] = (128, 128, 128), hparams: dict | None = None) -> None:
        from timm.data.auto_augment import rand_augment_transform

        if not config.startswith("rand"):
            raise ArgumentValueError(
                f"batch augmentation takes RandAugment strings such as rand-m9-mstd0.5, got {config!r}"
            )
        # timm parses the string, so that every option it knows (m, n, p, mstd, mmax, inc, t) means the same here.
        try:
            ra = rand_augment_transform(config, {"img_mean": tuple(fill), **(hparams or {})})
        except (AssertionError, ValueError) as e:
            raise ArgumentValueError(f"invalid RandAugment string {config!r}: {e or 'unknown section'}") from None
        names = [op.name for op in ra.ops]
        unsupported = sorted(set(names) - set(_OPS))
        if unsupported:
            raise ArgumentValueError(
                f"{config!r} uses {', '.join(unsupported)}, which batch augmentation does not implement; "
                f"supported: {', '.join(SUPPORTED_OPS)}"
            )
        op = ra.ops[0]
        self.config = config
        self.names = names
        self.num_layers = int(ra.num_layers)
        self.weights = None if ra.choice_weights is None else torch.as_tensor(ra.choice_weights, dtype=torch.float64)
        self.prob = float(op.prob)
        self.magnitude = float(op.magnitude)
        self.magnitude_std = float(op.magnitude_std or 0.0)
        self.magnitude_max = float(op.magnitude_max or _DENOM)
        self.hparams = dict(op.hparams)
        self.fill = torch.tensor([float(v) for v in fill])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r}, n={self.num_layers}, ops={self.names})"

    def _magnitudes(self, n: int, g: torch.Generator) -> torch.Tensor:
        if self.magnitude_std == math.inf:
            m = torch.rand(n, generator=g, dtype=torch.float64) * self.magnitude
        elif self.magnitude_std > 0:
            m = self.magnitude + self.magnitude_std * torch.randn(n, generator=g, dtype=torch.float64)
        else:
            m = torch.full((n,), self.magnitude, dtype=torch.float64)
        return m.clamp(0.0, self.magnitude_max)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A new augmented uint8 batch; ``images`` is left as it was."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ArgumentValueError(f"expected a uint8 batch (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        n, k = len(images), len(self.names)
        x = images.clone()
        if self.weights is None:
            choices = torch.randint(k, (n, self.num_layers), generator=g)
        else:
            choices = torch.multinomial(self.weights.expand(n, k), self.num_layers, replacement=False, generator=g)
        with _one_thread(x.device):
            for layer in range(self.num_layers):
                self._layer(x, choices[:, layer], g)
        return x

    def _layer(self, x: torch.Tensor, choice: torch.Tensor, g: torch.Generator) -> None:
        """One of the ``n`` layers, in place: each image its chosen operation, applied with probability ``p``."""
        n = len(x)
        applied = torch.rand(n, generator=g) < self.prob
        level = (self._magnitudes(n, g) / _DENOM).float()
        sign = torch.where(torch.rand(n, generator=g) > 0.5, -1.0, 1.0)
        for i, name in enumerate(self.names):
            rows = ((choice == i) & applied).nonzero().squeeze(1)
            if len(rows):
                on_device = rows.to(x.device)
                x[on_device] = self.apply(x[on_device], name, level[rows], sign[rows])

    def apply(self, images: torch.Tensor, name: str, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """Operation ``name`` on each image at its own ``level`` (magnitude / 10) and ``sign`` (-1 where timm
        negates the argument): what ``timm.data.auto_augment.AugmentOp(name)`` does to one PIL image."""
        if name not in _OPS:
            raise ArgumentValueError(f"unknown operation {name!r}; supported: {', '.join(SUPPORTED_OPS)}")
        fn, arg, geometric = _OPS[name]
        args = [] if arg is None else [arg(level, sign, tuple(images.shape[2:]), self.hparams).to(images.device)]
        if geometric:
            args.append(self.fill)
        return fn(images, *args)
