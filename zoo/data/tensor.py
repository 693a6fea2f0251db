"""Images held as one uint8 tensor, batched, augmented and normalised as whole tensors.

At 28x28 or 32x32 the per-sample Python and PIL work of a ``DataLoader`` costs more than the model itself;
slicing, shifting, flipping and normalising whole batches does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.errors import DataError
from zoo.utils.checks import int_in


@dataclass(eq=False, repr=False)
class TensorImageDataset(Dataset):
    """Images as one uint8 tensor ``(N, C, H, W)`` with integer ``targets``; indexing gives a normalised image."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]

    def __post_init__(self) -> None:
        if self.images.dim() == 3:
            self.images = self.images.unsqueeze(1)
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
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
    """A :class:`TensorImageDataset`'s images as PIL images through a caller's ``transform`` (e.g. the eval
    transform of ImageNet weights), one sample at a time."""

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


def channel_stats(values: Sequence[float], device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-channel statistics (a mean or a std) as a float ``(1, C, 1, 1)`` tensor on ``device``."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)


def normalize(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float, scaled to [0, 1] and standardised per channel."""
    # A loader passes channel_stats tensors already on the device: built from lists, they would be copied to the
    # GPU every batch, a blocking copy that waits for the GPU.
    x = images.float().div_(255.0)
    m = mean if isinstance(mean, torch.Tensor) else channel_stats(mean, x.device)
    s = std if isinstance(std, torch.Tensor) else channel_stats(std, x.device)
    return x.sub_(m).div_(s)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset in ``[-max_shift, max_shift]`` pixels, zero-filled: a
    per-sample RandomCrop with padding, as one gather over the padded batch."""
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
    """Batches of a :class:`TensorImageDataset`, augmented (translation by up to ``shift`` pixels, flip, timm's
    ``rand_augment`` string) and normalised as whole tensors. Batch ``b`` of epoch ``e`` depends only on ``(seed,
    e, b, rank)``, so a resumed run sees an uninterrupted one's batches; each of ``world_size`` ranks takes every
    ``world_size``-th sample (padded, as ``DistributedSampler`` does, when ``pad`` is set).
    """

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
    world_size: int = 1
    pad: bool = True
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        int_in("batch_size", self.batch_size, 1)
        self.device = torch.device(self.device)
        self.epoch = self.start_batch = 0
        self._augment = None
        if self.rand_augment:
            from zoo.data.batch_augment import BatchRandAugment

            self._augment = BatchRandAugment(self.rand_augment, tuple(round(255 * m) for m in self.dataset.mean))
        self._images = self.dataset.images.to(self.device)
        self._targets = self.dataset.targets.to(self.device)
        self._stats = channel_stats(self.dataset.mean, self.device), channel_stats(self.dataset.std, self.device)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle order; ``start_batch`` skips batches already trained on."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(n)
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
