"""Datasets for training and evaluation: MNIST-style IDX files, CIFAR-10/100 and image folders.

MNIST and Fashion-MNIST are decoded once into a uint8 tensor (:class:`~zoo.data.tensor.TensorImageDataset`)
and batched, augmented and normalised as whole tensors by :class:`~zoo.data.tensor.TensorLoader`. CIFAR
(torchvision's pickled batches) and image folders go through an ordinary ``DataLoader`` with workers and
per-sample transforms.

``create_datasets(name, data_dir, ...)`` builds the train and validation sets for the ``zoo train`` and
``zoo eval`` commands; each set carries ``classes`` (label names) and the normalisation it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.folder import ImageFolderDataset, scan_image_folder, split_samples, verify_images
from zoo.data.idx import IDX_DATASETS, find_idx_files, load_idx_dataset, read_idx
from zoo.data.tensor import TensorImageDataset, TensorLoader
from zoo.data.transforms import Augment, cifar_transform, folder_transforms

__all__ = [
    "DATASETS",
    "Augment",
    "DataInfo",
    "ImageFolderDataset",
    "TensorImageDataset",
    "TensorLoader",
    "create_datasets",
    "find_idx_files",
    "load_idx_dataset",
    "parse_dataset",
    "read_idx",
    "scan_image_folder",
    "subset",
    "verify_images",
]


@dataclass
class DataInfo:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    root: str
    extra: dict[str, Any] = field(default_factory=dict)


DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")


def parse_dataset(spec: str, data_dir: str | None) -> tuple[str, Path]:
    """``"mnist"`` + data dir, or ``"imagefolder:PATH"``, -> (kind, folder)."""
    name, _, path = spec.partition(":")
    name = name.lower().replace("-", "_")
    if name == "fashionmnist":
        name = "fashion_mnist"
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {spec!r}; choose one of {', '.join(DATASETS)} (or imagefolder:PATH)")
    if path and name != "imagefolder":
        raise ValueError(f"--dataset {spec!r}: only imagefolder takes a path after ':'; use --data-dir for {name}")
    folder = path or data_dir
    if not folder:
        raise ValueError(
            f"--dataset {name} needs --data-dir DIR" + (" (or imagefolder:PATH)" if name == "imagefolder" else "")
        )
    return name, Path(folder).expanduser()


def create_datasets(
    spec: str,
    data_dir: str | None = None,
    *,
    model_cfg: dict[str, Any] | None = None,
    augment: Augment | None = None,
    val_split: float | None = None,
    seed: int = 0,
    strict_images: bool = False,
    download: bool = False,
    eval_transform: Callable | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    splits: Sequence[str] = ("train", "val"),
) -> tuple[Dataset | None, Dataset | None, DataInfo]:
    """Train and validation sets for ``--dataset spec --data-dir data_dir``.

    MNIST-style and CIFAR sets validate on their official test split. Image folders use ``train/`` and
    ``val/`` sub-folders when present, else a seeded ``val_split`` of one folder (default 0.1).

    ``model_cfg`` (a model's ``pretrained_cfg``) sets an image folder's input size and normalisation;
    ``normalization`` (mean, std) replaces a known dataset's own statistics, e.g. with pretrained weights.
    Sets not named in ``splits`` are returned as None (and not read).
    """
    kind, folder = parse_dataset(spec, data_dir)
    aug = augment or Augment()
    want_train, want_val = "train" in splits, "val" in splits
    if val_split is not None and kind != "imagefolder":
        raise ValueError(f"--val-split applies to image folders; {kind} validates on its official test split")

    if kind in IDX_DATASETS:
        train = load_idx_dataset(kind, folder, "train") if want_train else None
        val = load_idx_dataset(kind, folder, "test") if want_val else None
        ref = train or val
        assert ref is not None
        if normalization:
            from zoo.models.base import fit_channels

            # Statistics for another channel count (RGB weights on grey digits) are averaged, as the
            # first convolution is when the model's input channels are adapted.
            channels = ref.input_size[0]
            for ds in (train, val):
                if ds is not None:
                    ds.mean = fit_channels(tuple(normalization[0]), channels)
                    ds.std = fit_channels(tuple(normalization[1]), channels)
        root = str(find_idx_files(kind, folder)["train"][0].parent)
        info = DataInfo(kind, len(ref.classes), ref.input_size[0], ref.input_size, ref.classes, ref.mean, ref.std, root)
        return train, val, info

    from zoo.data.cifar import CIFAR_STATS, cifar_root, load_cifar

    if kind in CIFAR_STATS:
        mean, std = normalization or CIFAR_STATS[kind]
        train_tf = cifar_transform(True, aug, mean, std)
        val_tf = eval_transform or cifar_transform(False, aug, mean, std)
        train = load_cifar(kind, folder, "train", train_tf, download) if want_train else None
        val = load_cifar(kind, folder, "test", val_tf, download) if want_val else None
        ref = train or val
        root = str(cifar_root(kind, folder))
        info = DataInfo(kind, len(ref.classes), 3, (3, 32, 32), list(ref.classes), tuple(mean), tuple(std), root)
        return train, val, info

    # Image folder
    cfg = dict(model_cfg or {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    if normalization:
        cfg["mean"], cfg["std"] = tuple(normalization[0]), tuple(normalization[1])
    if len(cfg["mean"]) != 3:
        # Folder images are read as RGB; a grey model's single statistic is repeated.
        cfg["mean"], cfg["std"] = (cfg["mean"][0],) * 3, (cfg["std"][0],) * 3
    cfg["input_size"] = (3, *tuple(cfg["input_size"])[1:])
    train_dir, val_dir = (
        folder / "train",
        next((folder / d for d in ("val", "validation") if (folder / d).is_dir()), None),
    )
    skipped: list[str] = []

    def readable(samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        good, bad = verify_images(samples, strict=strict_images)
        skipped.extend(p for p, _ in bad)
        return good

    if train_dir.is_dir() and val_dir is not None:
        if val_split is not None:
            print(f"note: {folder} has train/ and {val_dir.name}/ folders; --val-split is ignored", file=sys.stderr)
        classes, train_samples = scan_image_folder(train_dir)
        _, val_samples = scan_image_folder(val_dir, classes)
        train_samples = readable(train_samples) if want_train else []
        val_samples = readable(val_samples) if want_val else []
        layout = f"{train_dir} + {val_dir}"
    else:
        # Split only readable images, so the split does not depend on which files happen to be broken.
        base = train_dir if train_dir.is_dir() else folder
        classes, samples = scan_image_folder(base)
        fraction = 0.1 if val_split is None else val_split
        train_samples, val_samples = split_samples(readable(samples), fraction, seed)
        layout = f"{base} split {1 - fraction:.2g}/{fraction:.2g} with seed {seed}"
    train_tf, val_tf = folder_transforms(cfg, aug, eval_transform)
    train = ImageFolderDataset(train_samples, classes, train_tf) if want_train else None
    val = ImageFolderDataset(val_samples, classes, val_tf) if want_val and val_samples else None
    info = DataInfo(
        "imagefolder", len(classes), 3, tuple(cfg["input_size"]), classes, tuple(cfg["mean"]), tuple(cfg["std"]),
        str(folder), extra={"layout": layout, "skipped_images": skipped},
    )  # fmt: skip
    return train, val, info


def subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``n`` items (all of ``dataset`` when ``n`` is None or not smaller).

    The subset keeps the dataset's ``classes``, ``mean`` and ``std``.
    """
    if n is None or n >= len(dataset):  # type: ignore[arg-type]
        return dataset
    if n < 1:
        raise ValueError(f"a subset needs at least one image, got {n}")
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    if isinstance(dataset, TensorImageDataset):
        return dataset.subset(idx)
    from torch.utils.data import Subset

    sub = Subset(dataset, idx.tolist())
    for attr in ("classes", "mean", "std"):
        if hasattr(dataset, attr):
            setattr(sub, attr, getattr(dataset, attr))
    return sub
