"""Images held in memory as one uint8 tensor, and a loader that batches and augments them as whole tensors.

At 28x28 or 32x32 the per-sample Python and PIL work of a ``DataLoader`` costs more than the model itself;
slicing, shifting, flipping and normalising whole batches does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.errors import ArgumentValueError, DataError

__all__ = ["TensorImageDataset", "TensorLoader", "channel_stats", "normalize", "random_hflip", "random_shift"]


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor ``(N, C, H, W)`` with integer ``targets``.

    Indexing returns a normalised float image and its label, so the set works with any ``DataLoader``;
    :class:`TensorLoader` batches it faster by slicing the tensor directly.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise DataError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.classes = list(classes)
        self.mean = tuple(mean)
        self.std = tuple(std)

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


def channel_stats(values: Sequence[float], device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-channel statistics (a mean or a std) as a float ``(1, C, 1, 1)`` tensor on ``device``."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)


def normalize(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float, scaled to [0, 1] and standardised per channel.

    ``mean`` and ``std`` may be :func:`channel_stats` tensors already on the images' device: a loader passes
    those, since building them from lists copies them to the GPU, and a blocking copy waits for the GPU, every
    batch.
    """
    x = images.float().div_(255.0)
    m = mean if isinstance(mean, torch.Tensor) else channel_stats(mean, x.device)
    s = std if isinstance(std, torch.Tensor) else channel_stats(std, x.device)
    return x.sub_(m).div_(s)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset in ``[-max_shift, max_shift]`` pixels (zero fill).

    One gather over the padded batch: the same as a per-sample RandomCrop with padding, without a loop.
    """
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


class TensorLoader:
    """Batches of a :class:`TensorImageDataset`, augmented and normalised as whole tensors.

    Augmentation, in the order of the per-image pipelines: a random translation of up to ``shift`` pixels
    (RandomCrop with padding), a left-right flip with probability ``hflip``, then ``rand_augment``, a timm
    RandAugment string applied image by image on the uint8 batch (:class:`~zoo.data.batch_augment.BatchRandAugment`,
    filling with the dataset mean as timm does). Mixup and CutMix are the trainer's, on the normalised batch.

    The order and the augmentation of batch ``b`` of epoch ``e`` depend only on ``(seed, e, b, rank)``, so a run
    resumed at an epoch boundary, or one that skips the first batches of an epoch, sees the same batches as
    an uninterrupted one. With ``world_size > 1`` each rank takes every ``world_size``-th sample of the
    shuffled order (padded, as ``DistributedSampler`` does, when ``pad`` is set).
    """

    def __init__(
        self,
        dataset: TensorImageDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        shift: int = 0,
        hflip: float = 0.0,
        rand_augment: str = "",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ArgumentValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.shift = int(shift)
        self.hflip = float(hflip)
        self.rand_augment = None
        if rand_augment:
            from zoo.data.batch_augment import BatchRandAugment

            fill = tuple(round(255 * m) for m in dataset.mean)
            self.rand_augment = BatchRandAugment(rand_augment, fill)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.device = torch.device(device)
        self.epoch = 0
        self.start_batch = 0
        self._images = dataset.images.to(self.device)
        self._targets = dataset.targets.to(self.device)
        self._stats = channel_stats(dataset.mean, self.device), channel_stats(dataset.std, self.device)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle order; ``start_batch`` skips batches already trained on."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
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
            if self.shift or self.hflip or self.rand_augment is not None:
                key = (self.seed * 1_000_003 + self.epoch) * 1_000_003 + b
                # Each rank its own draws (rank 0 keeps the single-process stream).
                g.manual_seed((key * 1_000_003 + self.rank if self.rank else key) % (2**63))
                if self.shift:
                    x = random_shift(x, self.shift, g)
                if self.hflip:
                    x = random_hflip(x, self.hflip, g)
                if self.rand_augment is not None:
                    x = self.rand_augment(x, g)
            yield normalize(x, *self._stats), self._targets[idx]
        self.start_batch = 0
