"""Datasets for training and evaluation: MNIST-style IDX files, CIFAR-10/100 and image folders, one row of
:data:`KINDS` each. Small images of one size are a :class:`TensorImageDataset`, batched and augmented as whole
tensors by :class:`TensorLoader`; larger image folders stream through DataLoader workers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, Subset

from zoo.data.archive import data_cache_dir, env_number, extract_archive, is_archive
from zoo.data.cifar import find_cifar, load_cifar
from zoo.data.folder import (
    MAX_SIDE,
    ImageFolderDataset,
    cached_images,
    class_folders,
    eval_folder,
    scan_image_folder,
    stratified_split,
    verify_images,
)
from zoo.data.idx import IDX_DATASETS, find_idx_files, load_idx_dataset, read_idx
from zoo.data.tensor import TensorImageDataset, TensorLoader, TransformedImages
from zoo.data.transforms import Augment, folder_transforms
from zoo.errors import DataError
from zoo.models import cfg as stats
from zoo.utils.checks import Invalid

__all__ = [
    "KINDS",
    "Augment",
    "DataInfo",
    "DatasetKind",
    "DatasetSpec",
    "ImageFolderDataset",
    "TensorImageDataset",
    "TensorLoader",
    "TransformedImages",
    "create_datasets",
    "data_cache_dir",
    "data_fingerprint",
    "dataset_shape",
    "extract_archive",
    "find_idx_files",
    "holdout_split",
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
    eval_split: str = "test"  # or "holdout": part of the training images, which may choose weights; a test split never

    @property
    def eval_set_name(self) -> str:
        """Which images the evaluation set is, as reports name it."""
        if self.eval_split == "holdout":
            return "val, held out of the training images"
        if self.name in ("cifar10", "cifar100"):
            return "original test set" if self.extra.get("layout") == "batches" else "test set as image files"
        return "test"


_SPLITS = ("train", "val")  # create_datasets' names for a set's training images and its evaluation images


class _Sets(NamedTuple):
    train: Dataset | None
    val: Dataset | None
    classes: list[str]
    root: Path
    extra: dict[str, Any]
    split: str = "test"  # val is the data set's own test split; "holdout": a part of its training images


@dataclass(frozen=True)
class _Request:  # what create_datasets asks of a kind's loader
    kind: DatasetKind
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: Sequence[str]
    strict: bool
    download: bool
    val_split: float | None
    seed: int
    # A streamed folder's (train, eval) transforms, made when first needed; None: every image must be a tensor.
    transforms: Callable[[], tuple[Callable, Callable]] | None


@dataclass(frozen=True)
class DatasetKind:
    """A row of :data:`KINDS`: classes and image size (None: the folder's, the model's), channels, stats, loader."""

    name: str
    num_classes: int | None
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int] | None
    loader: Callable[[Path, _Request], _Sets]


class DatasetSpec(NamedTuple):
    """A parsed ``--dataset``/``--data-dir``: the kind's name and the folder (or archive) it is read from."""

    name: str
    folder: Path

    @property
    def kind(self) -> DatasetKind:
        return KINDS[self.name]


def _idx_sets(folder: Path, r: _Request) -> _Sets:
    name = r.kind.name
    load = partial(load_idx_dataset, name, folder, mean=r.mean, std=r.std)
    train, val = (load(s) if want in r.splits else None for s, want in zip(("train", "test"), _SPLITS, strict=True))
    return _Sets(train, val, list(IDX_DATASETS[name][0]), find_idx_files(name, folder)["train"][0].parent, {})


def _cifar_sets(folder: Path, r: _Request) -> _Sets:
    found = find_cifar(r.kind.name, folder)
    if found is not None and found[0] == "folder":  # CIFAR as image files (the JPEG tar.gz, extracted)
        return _folder_sets(found[1], r)
    root = found[1] if found is not None else folder
    load = partial(load_cifar, r.kind.name, root, download=r.download, mean=r.mean, std=r.std)
    train, val = (load(s) if want in r.splits else None for s, want in zip(("train", "test"), _SPLITS, strict=True))
    classes = (train if train is not None else val).classes  # type: ignore[union-attr]
    return _Sets(train, val, classes, root, {"layout": "batches"})


def _folder_sets(folder: Path, r: _Request) -> _Sets:
    """An image folder's sets at ``r.size``: small images of that size as cached tensors, others streamed."""
    folder = extract_archive(folder) if is_archive(folder) else folder
    val_dir = eval_folder(folder)
    base = folder / "train" if (folder / "train").is_dir() else folder
    classes, samples = scan_image_folder(base)
    budget = env_number("ZOO_IMAGE_CACHE_MB", 4096) * 2**20  # 0 turns the image cache off
    skipped, caches = [], []

    def read(samples: list[tuple[str, int]]) -> Dataset:
        """The readable ``samples`` as a tensor set where they can be, else as files."""
        fits = max(r.size) <= MAX_SIDE and len(samples) * 3 * r.size[0] * r.size[1] <= budget
        if r.transforms is None or fits:
            required = folder if r.transforms is None else None  # CIFAR: every image its size
            cached = cached_images(samples, r.size, strict=r.strict, write=fits, required=required)
            if cached is not None:
                skipped.extend(p for p, _ in cached.skipped)
                caches.extend([str(cached.path)] if cached.path else [])
                targets = torch.tensor([t for _, t in cached.samples], dtype=torch.long)
                return TensorImageDataset(cached.images, targets, classes, r.mean, r.std)
        good, bad = verify_images(samples, strict=r.strict)
        skipped.extend(p for p, _ in bad)
        return ImageFolderDataset(good, classes)

    if val_dir is not None:
        train = read(samples) if "train" in r.splits else None
        val = read(scan_image_folder(val_dir, classes)[1]) if "val" in r.splits else None
        layout = f"{base} + {val_dir}"
    else:
        # Split only readable images, so the split does not depend on which files happen to be broken.
        fraction = 0.1 if r.val_split is None else r.val_split
        whole = read(samples)
        labels = [int(t) for t in whole.targets]  # type: ignore[attr-defined]
        rows = stratified_split(labels, fraction, r.seed) if fraction else (list(range(len(labels))), [])
        train, val = (_rows(whole, rows[i]) if rows[i] and want in r.splits else None for i, want in enumerate(_SPLITS))
        layout = f"{base} split {1 - fraction:.2g}/{fraction:.2g} with seed {r.seed}"
    if isinstance(train, ImageFolderDataset) or isinstance(val, ImageFolderDataset):
        for ds, tf in zip((train, val), r.transforms(), strict=True):  # type: ignore[misc]
            if isinstance(ds, ImageFolderDataset):
                ds.transform = tf
    extra = {"layout": layout, "skipped_images": skipped, "image_cache": caches}
    return _Sets(train, val, classes, folder, extra, "test" if val_dir is not None else "holdout")


def _rows(dataset: Dataset, rows: list[int], transform: Callable | None = None) -> Dataset:
    if isinstance(dataset, TensorImageDataset):
        return dataset.subset(torch.tensor(rows, dtype=torch.long))
    return ImageFolderDataset([dataset.samples[i] for i in rows], dataset.classes, transform)  # type: ignore


KINDS = {
    kind.name: kind
    for kind in (
        DatasetKind("mnist", 10, 1, stats.MNIST_MEAN, stats.MNIST_STD, (28, 28), _idx_sets),
        DatasetKind("fashion_mnist", 10, 1, stats.FASHION_MNIST_MEAN, stats.FASHION_MNIST_STD, (28, 28), _idx_sets),
        DatasetKind("cifar10", 10, 3, stats.CIFAR10_MEAN, stats.CIFAR10_STD, (32, 32), _cifar_sets),
        DatasetKind("cifar100", 100, 3, stats.CIFAR100_MEAN, stats.CIFAR100_STD, (32, 32), _cifar_sets),
        DatasetKind("imagefolder", None, 3, stats.IMAGENET_MEAN, stats.IMAGENET_STD, None, _folder_sets),
    )
}


def parse_dataset(spec: str | DatasetSpec, data_dir: str | None = None) -> DatasetSpec:
    """``"mnist"`` and a data folder, or ``"imagefolder:PATH"``, as a :class:`DatasetSpec` (one given as it is)."""
    if isinstance(spec, DatasetSpec):
        return spec
    name, _, path = spec.partition(":")
    name = name.lower().replace("-", "_")
    name = "fashion_mnist" if name == "fashionmnist" else name
    if name not in KINDS:
        raise Invalid("--dataset", spec, f"must be one of {', '.join(KINDS)} (imagefolder:PATH names its folder)")
    if path and name != "imagefolder":
        raise Invalid("--dataset", spec, f"only imagefolder takes a path after ':'; give --data-dir for {name}")
    if not (path or data_dir):
        raise Invalid("--data-dir", data_dir, f"--dataset {name} needs a folder (--data-dir DIR or imagefolder:PATH)")
    return DatasetSpec(name, Path(path or data_dir).expanduser())  # type: ignore[arg-type]


def dataset_shape(spec: str | DatasetSpec, data_dir: str | None = None) -> tuple[int, int] | None:
    """(classes, channels) of a data set before any image is read (an image folder's class folders), or None."""
    spec = parse_dataset(spec, data_dir)
    if spec.kind.num_classes is not None:
        return spec.kind.num_classes, spec.kind.channels
    folder = extract_archive(spec.folder) if is_archive(spec.folder) else spec.folder
    classes = class_folders(folder / "train" if (folder / "train").is_dir() else folder)
    return (len(classes), spec.kind.channels) if classes else None


def create_datasets(
    spec: str | DatasetSpec,
    data_dir: str | None = None,
    *,
    model_cfg: dict[str, Any] | None = None,
    augment: Augment | None = None,
    val_split: float | None = None,
    seed: int = 0,
    strict_images: bool = True,
    download: bool = False,
    eval_transform: Callable | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    splits: Sequence[str] = ("train", "val"),
) -> tuple[Dataset | None, Dataset | None, DataInfo]:
    """Train and evaluation sets (None where not in ``splits``) and their :class:`DataInfo`; the evaluation set is the
    official test split, an image folder's ``val/``, ``validation/`` or ``test/``, else a seeded ``val_split``."""
    spec = parse_dataset(spec, data_dir)
    kind = spec.kind
    if val_split is not None and kind.num_classes is not None:
        raise Invalid("--val-split", val_split, f"applies to image folders; {kind.name} has an official test split")
    cfg = dict(model_cfg or {}) if kind.size is None else {}
    size = kind.size or tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    given = normalization or (cfg.get("mean", kind.mean), cfg.get("std", kind.std))
    # RGB statistics on grey digits are averaged, as the first convolution is when the input channels are adapted.
    mean, std = (stats.fit_channels(tuple(s), kind.channels) for s in given)
    cfg.update(input_size=(kind.channels, *size), mean=mean, std=std)

    streams = partial(folder_transforms, cfg, augment or Augment(), eval_transform) if kind.size is None else None
    request = _Request(kind, size, mean, std, tuple(splits), strict_images, download, val_split, seed, streams)
    sets = kind.loader(spec.folder, request)
    if kind.num_classes is not None and len(sets.classes) != kind.num_classes:
        raise DataError(f"{kind.name} has {kind.num_classes} classes, but {sets.root} has {len(sets.classes)}")
    ref = sets.train if sets.train is not None else sets.val
    input_size = ref.input_size if isinstance(ref, TensorImageDataset) else (kind.channels, *size)
    tensors = eval_transform is not None and isinstance(sets.val, TensorImageDataset)
    val = TransformedImages(sets.val, eval_transform) if tensors else sets.val  # type: ignore[arg-type]
    classes = list(sets.classes)
    info = DataInfo(
        kind.name, len(classes), kind.channels, input_size, classes, mean, std, str(sets.root), sets.extra, sets.split
    )
    return sets.train, val, info


def subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``n`` items (all when ``n`` is None or not smaller), keeping classes, mean and std."""
    if n is None or n >= len(dataset):  # type: ignore[arg-type]
        return dataset
    if n < 1:
        raise Invalid("subset", n, "needs at least one image")
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    if isinstance(dataset, TensorImageDataset):
        return dataset.subset(idx)
    sub = Subset(dataset, idx.tolist())
    sub.classes = getattr(dataset, "classes", None)  # type: ignore[attr-defined]
    return sub


def data_fingerprint(dataset: Dataset | None) -> dict[str, Any] | None:
    """A content hash of a split, which a run records and a resume compares: a tensor set's pixels and labels, a
    streamed folder's file names, sizes and labels (reading every file would cost an epoch); None otherwise."""
    if isinstance(dataset, TransformedImages):
        return data_fingerprint(dataset.dataset)
    digest = hashlib.sha256()
    if isinstance(dataset, Subset):
        inner = data_fingerprint(dataset.dataset)
        if inner is None:
            return None
        digest.update(inner["sha256"].encode())
        digest.update(torch.as_tensor(list(dataset.indices), dtype=torch.long).numpy().tobytes())
        how = inner["of"]
    elif isinstance(dataset, TensorImageDataset):
        digest.update(str(tuple(dataset.images.shape)).encode())
        digest.update(dataset.images.contiguous().view(torch.uint8).numpy().tobytes())
        digest.update(dataset.targets.numpy().tobytes())
        how = "pixels and labels"
    elif isinstance(dataset, ImageFolderDataset):
        for path, label in dataset.samples:
            digest.update(f"{'/'.join(Path(path).parts[-2:])}\t{os.stat(path).st_size}\t{label}\n".encode())
        how = "file names, sizes and labels"
    else:
        return None
    return {"images": len(dataset), "sha256": digest.hexdigest(), "of": how}  # type: ignore[arg-type]


def holdout_split(
    dataset: Dataset, fraction: float, seed: int, eval_transform: Callable | None = None
) -> tuple[Dataset, Dataset]:
    """(train, held-out validation): a seeded ``fraction`` of each class's images, which then choose a run's weights;
    a streamed :class:`ImageFolderDataset`'s held-out part takes ``eval_transform`` (required), not augmentation."""
    if not isinstance(dataset, (TensorImageDataset, ImageFolderDataset)):
        raise TypeError(f"holdout_split: cannot split a {type(dataset).__name__}; give a TensorImageDataset or folder")
    if isinstance(dataset, ImageFolderDataset) and eval_transform is None:
        raise Invalid("eval_transform", None, "is required to hold out part of a streamed image folder")
    train, val = stratified_split([int(t) for t in dataset.targets], fraction, seed)
    if not val:
        raise DataError(f"--val-split {fraction} of {len(train)} training images holds none out: each class has one")
    return _rows(dataset, train, getattr(dataset, "transform", None)), _rows(dataset, val, eval_transform)
