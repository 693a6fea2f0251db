"""Training and evaluation sets from an image folder: cached uint8 tensors for small images, files otherwise.

Layouts: ``root/train/<class>/*`` beside ``root/val/``, ``root/validation/`` or ``root/test/`` (evaluated on
that split), or one folder of class folders split by a seeded fraction.

Images that are small (at most 64x64) and exactly the model's input size become a
:class:`~zoo.data.tensor.TensorImageDataset` over the on-disk cache of :mod:`zoo.data.folder_cache`: the
trainer batches and augments them as whole tensors (random crop with padding, flip, RandAugment; mixup and
CutMix on the batch). Any other folder is an :class:`~zoo.data.folder.ImageFolderDataset` read by
DataLoader workers through per-sample transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.folder import ImageFolderDataset, eval_folder, scan_image_folder, split_samples, verify_images
from zoo.data.folder_cache import MAX_SIDE, cache_budget, cached_images, image_size
from zoo.data.tensor import TensorImageDataset
from zoo.errors import DataError

__all__ = ["FolderSets", "folder_datasets"]


@dataclass
class FolderSets:
    """What :func:`folder_datasets` found: the sets (None where not asked for) and how they were made."""

    train: Dataset | None
    val: Dataset | None
    classes: list[str]
    layout: str
    skipped: list[str] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)
    official_eval: bool = True  # val is the folder's own val/ or test/, not a split of its training images

    def extra(self) -> dict[str, Any]:
        return {"layout": self.layout, "skipped_images": self.skipped, "image_cache": self.caches}


class _Builder:
    def __init__(self, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], strict: bool,
                 required_size: bool) -> None:  # fmt: skip
        self.size, self.mean, self.std, self.strict = size, tuple(mean), tuple(std), strict
        self.required_size = required_size
        self.skipped: list[str] = []
        self.caches: list[str] = []
        self.budget = cache_budget()

    def tensors(
        self, samples: list[tuple[str, int]], classes: list[str]
    ) -> tuple[TensorImageDataset, list[tuple[str, int]]] | None:
        """The samples as a cached tensor set and the readable samples, or None when they are not cached."""
        h, w = self.size
        found = image_size(samples)
        if self.required_size and found is not None and found != self.size:
            folder = Path(samples[0][0]).parent.parent
            raise DataError(
                f"the images in {folder} are {found[1]}x{found[0]}, expected {w}x{h}; "
                f"use --dataset imagefolder:{folder} for images of other sizes"
            )
        if max(h, w) > MAX_SIDE or len(samples) * 3 * h * w > self.budget or found != self.size:
            return None
        cached = cached_images(samples, self.size, strict=self.strict)
        if cached is None:
            return None
        self.skipped.extend(p for p, _ in cached.skipped)
        if cached.path is not None:
            self.caches.append(str(cached.path))
        targets = torch.tensor([t for _, t in cached.samples], dtype=torch.long)
        return TensorImageDataset(cached.images, targets, classes, self.mean, self.std), cached.samples

    def readable(self, samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        good, bad = verify_images(samples, strict=self.strict)
        self.skipped.extend(p for p, _ in bad)
        return good


def folder_datasets(
    folder: Path,
    *,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    train_transform: Callable,
    val_transform: Callable,
    cache_val: bool = True,
    val_split: float | None = None,
    seed: int = 0,
    strict: bool = False,
    want_train: bool = True,
    want_val: bool = True,
    required_size: bool = False,
) -> FolderSets:
    """The train and validation sets of the image folder ``folder`` at the model's input ``size`` (H, W).

    ``train_transform`` and ``val_transform`` serve the per-sample path; with ``cache_val`` False (an
    evaluation transform of the caller's own) the validation set always takes it. ``required_size``: images
    of another size are an error (CIFAR) rather than a reason to stream them.
    """
    build = _Builder(size, mean, std, strict, required_size)
    train_dir, val_dir = folder / "train", eval_folder(folder)
    train: Dataset | None = None
    val: Dataset | None = None
    if val_dir is not None:
        classes, train_samples = scan_image_folder(train_dir)
        _, val_samples = scan_image_folder(val_dir, classes)
        if want_train:
            made = build.tensors(train_samples, classes)
            train = made[0] if made else ImageFolderDataset(build.readable(train_samples), classes, train_transform)
        if want_val:
            made = build.tensors(val_samples, classes) if cache_val else None
            if made:
                val = made[0]
            else:
                good = build.readable(val_samples)
                val = ImageFolderDataset(good, classes, val_transform) if good else None
        layout = f"{train_dir} + {val_dir}"
    else:
        # Split only readable images, so the split does not depend on which files happen to be broken.
        base = train_dir if train_dir.is_dir() else folder
        classes, samples = scan_image_folder(base)
        fraction = 0.1 if val_split is None else val_split
        made = build.tensors(samples, classes)
        readable = made[1] if made else build.readable(samples)
        train_samples, val_samples = split_samples(readable, fraction, seed)
        if made:
            index = {path: i for i, (path, _) in enumerate(readable)}
            rows = {name: torch.tensor([index[p] for p, _ in s], dtype=torch.long)
                    for name, s in (("train", train_samples), ("val", val_samples))}  # fmt: skip
            train = made[0].subset(rows["train"]) if want_train else None
            if want_val and val_samples:
                val = made[0].subset(rows["val"]) if cache_val else None
        else:
            train = ImageFolderDataset(train_samples, classes, train_transform) if want_train else None
        if want_val and val is None and val_samples:
            val = ImageFolderDataset(val_samples, classes, val_transform)
        layout = f"{base} split {1 - fraction:.2g}/{fraction:.2g} with seed {seed}"
    return FolderSets(train, val, classes, layout, build.skipped, build.caches, official_eval=val_dir is not None)
