"""Images held as one uint8 tensor, batched, augmented and normalised as whole tensors: at 28x28 or 32x32 the
per-sample Python and PIL work of a ``DataLoader`` costs more than the model itself. :class:`BatchRandAugment` is
timm's RandAugment on such batches, each image its own draws, within one grey level of timm's PIL output."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.errors import DataError
from zoo.utils import checks
from zoo.utils.checks import Invalid, int_in


@dataclass(eq=False, repr=False)
class TensorImageDataset(Dataset):
    """Images as one uint8 tensor ``(N, C, H, W)`` with integer ``targets``; indexing gives a normalised image."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), not {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.targets) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.targets)} targets")
        self.targets = torch.as_tensor(self.targets, dtype=torch.long)
        self.classes, self.mean, self.std = list(self.classes), tuple(self.mean), tuple(self.std)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalize(self.images[index : index + 1], self.mean, self.std)[0], int(self.targets[index])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: torch.Tensor) -> TensorImageDataset:
        """A new dataset of the given rows (shares nothing that later augmentation could modify)."""
        return TensorImageDataset(self.images[indices], self.targets[indices], self.classes, self.mean, self.std)


class TransformedImages(Dataset):
    """A :class:`TensorImageDataset`'s images as PIL images through ``transform``, one sample at a time."""

    def __init__(self, dataset: TensorImageDataset, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform
        self.classes, self.targets = dataset.classes, dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        pixels = self.dataset.images[index].permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        return self.transform(image), int(self.targets[index])


Stats = Sequence[float] | torch.Tensor  # per-channel values, or channel_stats' tensor of them


def channel_stats(values: Sequence[float], device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-channel statistics (a mean or a std) as a float ``(1, C, 1, 1)`` tensor on ``device``."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)


def normalize(images: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float, scaled to [0, 1] and standardised per channel."""
    # A loader passes channel_stats on its device: lists would be copied to the GPU every batch, a blocking copy.
    x = images.float().div_(255.0)
    m = mean if isinstance(mean, torch.Tensor) else channel_stats(mean, x.device)
    s = std if isinstance(std, torch.Tensor) else channel_stats(std, x.device)
    return x.sub_(m).div_(s)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset of up to ``max_shift`` pixels, zero-filled, as one gather."""
    n, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=generator).to(images.device, non_blocking=True)
    dx = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=generator).to(images.device, non_blocking=True)
    rows = dy + torch.arange(h, device=images.device)
    cols = dx + torch.arange(w, device=images.device)
    n_idx = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    c_idx = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[n_idx, c_idx, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def random_hflip(images: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``prob``."""
    flip = (torch.rand(len(images), generator=generator) < prob).to(images.device, non_blocking=True)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


@dataclass(eq=False)
class TensorLoader:
    """Batches of a :class:`TensorImageDataset`, shifted, flipped, RandAugmented and normalised as whole tensors;
    batch ``b`` of epoch ``e`` depends only on ``(seed, e, b, rank)``, so a resumed run sees an uninterrupted one's."""

    dataset: TensorImageDataset
    batch_size: int
    _: KW_ONLY
    shuffle: bool = False
    drop_last: bool = False
    shift: int = 0
    hflip: float = 0.0
    rand_augment: str = ""
    seed: int = 0
    rank: int = 0
    world_size: int = 1  # each rank takes every world_size-th sample
    pad: bool = True  # pad the order to a multiple of world_size, as DistributedSampler does
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        int_in("batch_size", self.batch_size, 1)
        self.device = torch.device(self.device)
        self.epoch = self.start_batch = 0
        fill = tuple(round(255 * m) for m in self.dataset.mean)
        self._augment = BatchRandAugment(self.rand_augment, fill) if self.rand_augment else None
        self._images = self.dataset.images.to(self.device)
        self._targets = self.dataset.targets.to(self.device)
        self._stats = channel_stats(self.dataset.mean, self.device), channel_stats(self.dataset.std, self.device)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle order; ``start_batch`` skips batches already trained on."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            if self.pad:
                total = math.ceil(n / self.world_size) * self.world_size
                order = torch.cat([order, order[: total - n]]) if total > n else order
            order = order[self.rank :: self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices().to(self.device)
        g = torch.Generator()
        for b in range(self.start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self._images[idx]
            if self.shift or self.hflip or self._augment is not None:
                key = (self.seed * 1_000_003 + self.epoch) * 1_000_003 + b
                # Each rank its own draws (rank 0 keeps the single-process stream).
                g.manual_seed((key * 1_000_003 + self.rank if self.rank else key) % (2**63))
                if self.shift:
                    x = random_shift(x, self.shift, g)
                if self.hflip:
                    x = random_hflip(x, self.hflip, g)
                if self._augment is not None:
                    x = self._augment(x, g)
            yield normalize(x, *self._stats), self._targets[idx]
        self.start_batch = 0


_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude 10 is the full range of each operation


def _blend(degenerate: Callable, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's enhancements: ``Image.blend(degenerate(x), x, factor)``, one factor per image, truncated to uint8."""
    d = degenerate(x).float()
    return (d + factor.view(-1, 1, 1, 1) * (x.float() - d)).clamp_(0, 255).to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion (ITU-R 601-2 luma), as float, keeping a channel axis of one."""
    if images.shape[1] == 1:
        return images.float()
    w = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (images.float() * w).sum(1, keepdim=True).round_()


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13); the border keeps the original pixels."""
    kernel = torch.ones(x.shape[1], 1, 3, 3, device=x.device)
    kernel[:, :, 1, 1] = 5.0
    out = x.float().clone()
    out[:, :, 1:-1, 1:-1] = F.conv2d(x.float(), kernel / 13.0, groups=x.shape[1]).round_()
    return out


# What each of PIL's ImageEnhance operations blends an image with.
_DEGENERATE = {
    "Color": lambda x: _grey(x).expand_as(x),
    "Contrast": lambda x: _grey(x).mean(dim=(1, 2, 3), keepdim=True).add_(0.5).floor_().expand_as(x),  # PIL's int()
    "Brightness": torch.zeros_like,
    "Sharpness": _smooth,
}


def _torchvision(name: str, x: torch.Tensor) -> torch.Tensor:
    """torchvision's batched operation ``name`` (one without an argument), imported when first used."""
    from torchvision.transforms.v2 import functional as TF

    return getattr(TF, name)(x)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    bits = bits.clamp(1, 8).to(torch.int32)  # at least one bit: zero bits would black the image out
    mask = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8).view(-1, 1, 1, 1)
    return x & mask


def _solarize(x: torch.Tensor, thresh: torch.Tensor) -> torch.Tensor:
    return torch.where(x.int() >= thresh.view(-1, 1, 1, 1), 255 - x, x)


def _solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    added = (x.int() + add.view(-1, 1, 1, 1)).clamp_(max=255).to(torch.uint8)
    return torch.where(x < 128, added, x)


def _affine(x: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, matrix)`` per image: pixel (x, y) is the input's at matrix @ (x, y, 1)."""
    n, c, h, w = x.shape
    centres = [torch.arange(k, device=x.device, dtype=torch.float32) + 0.5 for k in (h, w)]
    ys, xs = torch.meshgrid(*centres, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, h * w, 3)
    src = points @ matrix.transpose(1, 2)  # (n, h*w, 2) in pixels
    size = torch.tensor([w, h], device=x.device, dtype=torch.float32)
    # PIL fills a pixel whose source falls outside, and repeats the border for the others: a sharp edge, no blend.
    inside = ((src >= 0) & (src < size)).all(dim=-1).view(n, 1, h, w)
    grid = (src / size * 2 - 1).view(n, h, w, 2)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    fill = fill[:c] if len(fill) >= c else fill[:1]
    images = torch.where(inside, out, fill.to(x.device).view(1, -1, 1, 1))
    return images.round_().clamp_(0, 255).to(torch.uint8)


def _rotate(x: torch.Tensor, degrees: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    # PIL's rotate: counter-clockwise about the image centre (cx, cy).
    cx, cy = x.shape[3] / 2.0, x.shape[2] / 2.0
    a = degrees.to(x.device) * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    rows = [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]
    return _affine(x, torch.stack(rows, dim=1).view(-1, 2, 3), fill)


def _entry(row: int, col: int, x: torch.Tensor, value: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """The affine map with one entry of the identity changed: a shear (``x' = x + f*y``) or a translation."""
    m = torch.eye(2, 3, device=x.device).repeat(len(x), 1, 1)
    m[:, row, col] = value.to(x.device)
    return _affine(x, m, fill)


_SHEAR_X, _SHEAR_Y, _SHIFT_X, _SHIFT_Y = (partial(_entry, *at) for at in ((0, 1), (1, 0), (0, 2), (1, 2)))


# name -> (operation, its argument from level (0..1) and sign as timm's LEVEL_TO_ARG, whether it takes the fill).
_OPS: dict[str, tuple[Callable, Callable | None, bool]] = {
    "AutoContrast": (partial(_torchvision, "autocontrast"), None, False),
    "Equalize": (partial(_torchvision, "equalize"), None, False),
    "Invert": (lambda x: 255 - x, None, False),
    "Rotate": (_rotate, lambda lv, s, size, hp: lv * 30.0 * s, True),
    "Posterize": (_posterize, lambda lv, s, size, hp: (lv * 4).floor(), False),
    "PosterizeIncreasing": (_posterize, lambda lv, s, size, hp: 4 - (lv * 4).floor(), False),
    "PosterizeOriginal": (_posterize, lambda lv, s, size, hp: (lv * 4).floor() + 4, False),
    "Solarize": (_solarize, lambda lv, s, size, hp: (lv * 256).floor().clamp(max=256), False),
    "SolarizeIncreasing": (_solarize, lambda lv, s, size, hp: 256 - (lv * 256).floor().clamp(max=256), False),
    "SolarizeAdd": (_solarize_add, lambda lv, s, size, hp: (lv * 110).floor().clamp(max=128), False),
    "ShearX": (_SHEAR_X, lambda lv, s, size, hp: lv * 0.3 * s, True),
    "ShearY": (_SHEAR_Y, lambda lv, s, size, hp: lv * 0.3 * s, True),
    "TranslateXRel": (_SHIFT_X, lambda lv, s, size, hp: lv * hp.get("translate_pct", 0.45) * s * size[1], True),
    "TranslateYRel": (_SHIFT_Y, lambda lv, s, size, hp: lv * hp.get("translate_pct", 0.45) * s * size[0], True),
    "TranslateX": (_SHIFT_X, lambda lv, s, size, hp: lv * hp.get("translate_const", 0.45 * size[1]) * s, True),
    "TranslateY": (_SHIFT_Y, lambda lv, s, size, hp: lv * hp.get("translate_const", 0.45 * size[0]) * s, True),
}
for _name, _degenerate in _DEGENERATE.items():  # factor: level * 1.8 + 0.1, or increasing 1 +- 0.9 (at least 0.1)
    _OPS[_name] = (partial(_blend, _degenerate), lambda lv, s, size, hp: lv * 1.8 + 0.1, False)
    _OPS[_name + "Increasing"] = (_OPS[_name][0], lambda lv, s, size, hp: (1 + s * lv * 0.9).clamp(min=0.1), False)
_OPS["Desaturate"] = (_OPS["Color"][0], lambda lv, s, size, hp: 1.0 - (0.5 + 0.5 * lv).clamp(0.5, 1.0), False)

SUPPORTED_OPS = tuple(sorted(_OPS))


class BatchRandAugment:
    """timm's RandAugment ``config`` on uint8 batches ``(N, C, H, W)``, each image with its own draws; ``fill``
    (0-255 per channel, timm's dataset mean) is what rotations, shears and translations leave behind."""

    def __init__(self, config: str, fill: Sequence[int] = (128, 128, 128), hparams: dict | None = None) -> None:
        from timm.data.auto_augment import rand_augment_transform

        if not config.startswith("rand"):
            raise Invalid("rand_augment", config, "must be a RandAugment string such as rand-m9-mstd0.5")
        # timm parses the string, so that every option it knows (m, n, p, mstd, mmax, inc, t) means the same here.
        try:
            ra = rand_augment_transform(config, {"img_mean": tuple(fill), **(hparams or {})})
        except (AssertionError, ValueError) as e:
            raise Invalid("rand_augment", config, f"is not a RandAugment string: {e or 'unknown section'}") from None
        names = [op.name for op in ra.ops]
        unsupported = sorted(set(names) - set(_OPS))
        if unsupported:
            must = f"names only operations batch augmentation implements ({', '.join(SUPPORTED_OPS)})"
            raise Invalid("rand_augment", config, must, hint=f"leave out {', '.join(unsupported)}")
        self.config = config
        self.names = names
        self.num_layers = int(ra.num_layers)
        self.weights = None if ra.choice_weights is None else torch.as_tensor(ra.choice_weights, dtype=torch.float64)
        self.op = ra.ops[0]  # timm's ops share their probability, magnitude and hparams
        self.fill = torch.tensor([float(v) for v in fill])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r}, n={self.num_layers}, ops={self.names})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A new augmented uint8 batch; ``images`` is left as it was."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise Invalid("images", f"{images.dtype} {tuple(images.shape)}", "must be a uint8 batch (N, C, H, W)")
        g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        n, k = len(images), len(self.names)
        x = images.clone()
        if self.weights is None:
            choices = torch.randint(k, (n, self.num_layers), generator=g)
        else:
            choices = torch.multinomial(self.weights.expand(n, k), self.num_layers, replacement=False, generator=g)
        # Threads cost more than they save on slices of a batch: 12 ms a batch on one, 50-500 ms on 2 busy cores.
        threads = torch.get_num_threads()
        torch.set_num_threads(1 if x.device.type == "cpu" else threads)
        try:
            for layer in range(self.num_layers):
                self._layer(x, choices[:, layer], g)
        finally:
            torch.set_num_threads(threads)
        return x

    def _layer(self, x: torch.Tensor, choice: torch.Tensor, g: torch.Generator) -> None:
        """One of the ``n`` layers, in place: each image its chosen operation, applied with probability ``p``."""
        n = len(x)
        applied = torch.rand(n, generator=g) < self.op.prob
        std = self.op.magnitude_std or 0.0
        if std == math.inf:  # timm's: uniform in [0, magnitude]
            m = torch.rand(n, generator=g, dtype=torch.float64) * self.op.magnitude
        elif std > 0:
            m = self.op.magnitude + std * torch.randn(n, generator=g, dtype=torch.float64)
        else:
            m = torch.full((n,), float(self.op.magnitude), dtype=torch.float64)
        level = (m.clamp(0.0, self.op.magnitude_max or _DENOM) / _DENOM).float()
        sign = torch.where(torch.rand(n, generator=g) > 0.5, -1.0, 1.0)
        for i, name in enumerate(self.names):
            rows = ((choice == i) & applied).nonzero().squeeze(1)
            if len(rows):
                on_device = rows.to(x.device)
                x[on_device] = self.apply(x[on_device], name, level[rows], sign[rows])

    def apply(self, images: torch.Tensor, name: str, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """timm's ``AugmentOp(name)`` on each image at its own ``level`` (magnitude / 10) and ``sign`` (-1: negated)."""
        fn, arg, geometric = _OPS[checks.one_of("name", name, SUPPORTED_OPS)]
        args = [] if arg is None else [arg(level, sign, tuple(images.shape[2:]), self.op.hparams).to(images.device)]
        if geometric:
            args.append(self.fill)
        return fn(images, *args)
