"""Datasets for training and evaluation: MNIST-style IDX files, CIFAR-10/100 and image folders.

MNIST, Fashion-MNIST, CIFAR's training images and folders of small images are held as one uint8 tensor
(:class:`~zoo.data.tensor.TensorImageDataset`; for image folders a memory-mapped on-disk cache, see
:mod:`zoo.data.folder_cache`) and batched, augmented and normalised as whole tensors by
:class:`~zoo.data.tensor.TensorLoader`. Folders of larger images go through an ordinary ``DataLoader`` with
workers and per-sample transforms.

CIFAR-10 comes as torchvision's pickled batches or as an image folder with ``train/`` and ``test/`` (the JPEG
``.tar.gz``, which ``--data-dir`` also accepts as it is: it is extracted into zoo's data cache once).

``create_datasets(name, data_dir, ...)`` builds the train and validation sets for the ``zoo train`` and
``zoo eval`` commands; each set carries ``classes`` (label names) and the normalisation it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.archive import data_cache_dir, extract_archive, is_archive
from zoo.data.folder import (
    ImageFolderDataset,
    class_folders,
    scan_image_folder,
    split_samples,
    stratified_split,
    verify_images,
)
from zoo.data.folder_sets import folder_datasets
from zoo.data.idx import IDX_DATASETS, find_idx_files, load_idx_dataset, read_idx
from zoo.data.tensor import TensorImageDataset, TensorLoader
from zoo.data.transforms import Augment, cifar_transform, folder_transforms
from zoo.errors import ArgumentValueError, DataError
from zoo.models.cfg import IMAGENET_MEAN, IMAGENET_STD, fit_channels

__all__ = [
    "DATASETS",
    "Augment",
    "DataInfo",
    "ImageFolderDataset",
    "TensorImageDataset",
    "TensorLoader",
    "create_datasets",
    "dataset_shape",
    "data_cache_dir",
    "data_fingerprint",
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
    # What the second set create_datasets returns is: "test", an official split (a dataset's test set, an
    # image folder's val/ or test/), reported but never used to choose weights; or "holdout", a seeded part
    # of the training images, which may choose them.
    eval_split: str = "test"

    @property
    def eval_set_name(self) -> str:
        """Which images the evaluation set is, as reports name it: CIFAR's pickled batches are "the original
        test set"; the same test set as image files (e.g. re-encoded as JPEG) is named as such."""
        if self.eval_split == "holdout":
            return "val, held out of the training images"
        if self.name in ("cifar10", "cifar100"):
            return "original test set" if self.extra.get("layout") == "batches" else "test set as image files"
        return "test"


DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")


def dataset_shape(spec: str, data_dir: str | None = None) -> tuple[int, int] | None:
    """(classes, channels) of ``--dataset spec --data-dir data_dir`` before any image is read, so that a model can
    be built for it first (its input size then sizes an image folder's transforms).

    MNIST-style and CIFAR sets have a fixed shape. An image folder (or its ``.tar.gz``, extracted once) has a
    class per sub-folder of ``train/`` (or of the folder itself) and three channels (images are read as RGB);
    None when it has no class sub-folders, which reading it then reports.
    """
    kind, folder = parse_dataset(spec, data_dir)
    if kind in IDX_DATASETS:
        return len(IDX_DATASETS[kind].classes), 1
    if kind != "imagefolder":
        return {"cifar10": (10, 3), "cifar100": (100, 3)}[kind]
    if is_archive(folder):
        folder = extract_archive(folder)
    classes = class_folders(folder / "train" if (folder / "train").is_dir() else folder)
    return (len(classes), 3) if classes else None


def parse_dataset(spec: str, data_dir: str | None) -> tuple[str, Path]:
    """``"mnist"`` + data dir, or ``"imagefolder:PATH"``, -> (kind, folder)."""
    name, _, path = spec.partition(":")
    name = name.lower().replace("-", "_")
    if name == "fashionmnist":
        name = "fashion_mnist"
    if name not in DATASETS:
        raise DataError(f"unknown dataset {spec!r}; choose one of {', '.join(DATASETS)} (or imagefolder:PATH)")
    if path and name != "imagefolder":
        raise DataError(f"--dataset {spec!r}: only imagefolder takes a path after ':'; use --data-dir for {name}")
    folder = path or data_dir
    if not folder:
        raise DataError(
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
    strict_images: bool = True,
    download: bool = False,
    eval_transform: Callable | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    splits: Sequence[str] = ("train", "val"),
) -> tuple[Dataset | None, Dataset | None, DataInfo]:
    """Train and evaluation sets for ``--dataset spec --data-dir data_dir``.

    MNIST-style and CIFAR sets evaluate on their official test split. Image folders use ``train/`` and
    ``val/`` (or ``validation/``, or ``test/``) sub-folders when present, else a seeded ``val_split`` of one
    folder (default 0.1; ``info.eval_split`` is then ``"holdout"``). A ``.tar.gz`` of an image folder is
    extracted into zoo's data cache first. :func:`holdout_split` carves a validation set out of the training
    images where an official test split exists.

    ``model_cfg`` (a model's ``pretrained_cfg``) sets an image folder's input size and normalisation;
    ``normalization`` (mean, std) replaces a known dataset's own statistics, e.g. with pretrained weights.
    Sets not named in ``splits`` are returned as None (and not read). An image that cannot be decoded is a
    :class:`~zoo.errors.DataError` naming it; with ``strict_images=False`` unreadable images are listed on
    stderr, left out and named in ``info.extra["skipped_images"]``.
    """
    kind, folder = parse_dataset(spec, data_dir)
    aug = augment or Augment()
    want_train, want_val = "train" in splits, "val" in splits
    if val_split is not None and kind != "imagefolder":
        raise ArgumentValueError(f"--val-split applies to image folders; {kind} validates on its official test split")

    if kind in IDX_DATASETS:
        train = load_idx_dataset(kind, folder, "train") if want_train else None
        val = load_idx_dataset(kind, folder, "test") if want_val else None
        ref = train or val
        assert ref is not None
        if normalization:
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

    from zoo.data.cifar import CIFAR_STATS, cifar_root, find_cifar, load_cifar

    if kind in CIFAR_STATS:
        mean, std = normalization or CIFAR_STATS[kind]
        found = find_cifar(kind, folder)
        if found is not None and found[0] == "folder":
            # CIFAR as image files (the JPEG tar.gz, extracted): the same tensors and batch augmentation.
            sets = folder_datasets(
                found[1], size=(32, 32), mean=mean, std=std, train_transform=cifar_transform(True, aug, mean, std),
                val_transform=eval_transform or cifar_transform(False, aug, mean, std),
                cache_val=eval_transform is None, strict=strict_images, want_train=want_train, want_val=want_val,
                required_size=True,
            )  # fmt: skip
            n = 10 if kind == "cifar10" else 100
            if len(sets.classes) != n:
                raise DataError(f"{kind} has {n} classes, but {found[1] / 'train'} has {len(sets.classes)} folders")
            info = DataInfo(kind, n, 3, (3, 32, 32), sets.classes, tuple(mean), tuple(std), str(found[1]),
                            extra=sets.extra())  # fmt: skip
            return sets.train, sets.val, info
        root = found[1] if found is not None else folder
        val_tf = eval_transform or cifar_transform(False, aug, mean, std)
        try:
            train = load_cifar(kind, root, "train", None, download) if want_train else None
            val = load_cifar(kind, root, "test", val_tf, download) if want_val else None
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e}\nOr give a folder with train/ and test/ image folders (CIFAR-10 as JPEGs), or its .tar.gz."
            ) from None
        ref = train or val
        if train is not None:
            # The pickled batches are already one uint8 array: batched and augmented as whole tensors.
            images = torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous()
            train = TensorImageDataset(images, torch.tensor(train.targets), list(train.classes), mean, std)
        info = DataInfo(kind, len(ref.classes), 3, (3, 32, 32), list(ref.classes), tuple(mean), tuple(std),
                        str(cifar_root(kind, root)), extra={"layout": "batches"})  # fmt: skip
        return train, val, info

    # Image folder
    cfg = dict(model_cfg or {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    if normalization:
        cfg["mean"], cfg["std"] = tuple(normalization[0]), tuple(normalization[1])
    if len(cfg["mean"]) != 3:
        # Folder images are read as RGB; a grey model's single statistic is repeated.
        cfg["mean"], cfg["std"] = (cfg["mean"][0],) * 3, (cfg["std"][0],) * 3
    cfg["input_size"] = (3, *tuple(cfg["input_size"])[1:])
    if is_archive(folder):
        folder = extract_archive(folder)
    train_tf, val_tf = folder_transforms(cfg, aug, eval_transform)
    sets = folder_datasets(
        folder, size=tuple(cfg["input_size"][1:]), mean=cfg["mean"], std=cfg["std"], train_transform=train_tf,
        val_transform=val_tf, cache_val=eval_transform is None, val_split=val_split, seed=seed, strict=strict_images,
        want_train=want_train, want_val=want_val,
    )  # fmt: skip
    info = DataInfo(
        "imagefolder", len(sets.classes), 3, tuple(cfg["input_size"]), sets.classes, tuple(cfg["mean"]),
        tuple(cfg["std"]), str(folder), extra=sets.extra(), eval_split="test" if sets.official_eval else "holdout",
    )  # fmt: skip
    return sets.train, sets.val, info


def subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``n`` items (all of ``dataset`` when ``n`` is None or not smaller).

    The subset keeps the dataset's ``classes``, ``mean`` and ``std``.
    """
    if n is None or n >= len(dataset):  # type: ignore[arg-type]
        return dataset
    if n < 1:
        raise ArgumentValueError(f"a subset needs at least one image, got {n}")
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    if isinstance(dataset, TensorImageDataset):
        return dataset.subset(idx)
    from torch.utils.data import Subset

    sub = Subset(dataset, idx.tolist())
    for attr in ("classes", "mean", "std"):
        if hasattr(dataset, attr):
            setattr(sub, attr, getattr(dataset, attr))
    return sub


def data_fingerprint(dataset: Dataset | None) -> dict[str, Any] | None:
    """What a split holds, as a content hash a run records and a resume compares.

    A tensor set (IDX, CIFAR batches, a decoded image folder) is hashed by its pixels and labels; a streamed
    image folder by each file's class folder, name, size and label (reading every file would cost an epoch).
    None for a dataset of another kind, which is then not compared.
    """
    import hashlib
    import os

    from torch.utils.data import Subset

    if dataset is None:
        return None
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
            p = Path(path)
            digest.update(f"{p.parent.name}/{p.name}\t{os.stat(path).st_size}\t{label}\n".encode())
        how = "file names, sizes and labels"
    else:
        return None
    return {"images": len(dataset), "sha256": digest.hexdigest(), "of": how}  # type: ignore[arg-type]


def holdout_split(
    dataset: Dataset, fraction: float, seed: int, eval_transform: Callable | None = None
) -> tuple[Dataset, Dataset]:
    """Split a training set into (train, held-out validation): a seeded ``fraction`` of each class's images.

    The held-out part chooses a run's weights, so the official test split is never used for that. Its
    images are not augmented: tensor sets are augmented by the loader only while training, and an image
    folder's held-out part takes ``eval_transform`` (required for a streamed :class:`ImageFolderDataset`).
    """
    if isinstance(dataset, TensorImageDataset):
        train, val = stratified_split(dataset.targets.tolist(), fraction, seed)
        _require_held_out(val, len(dataset), fraction)
        return dataset.subset(torch.tensor(train)), dataset.subset(torch.tensor(val))
    if isinstance(dataset, ImageFolderDataset):
        if eval_transform is None:
            raise ArgumentValueError(
                "holdout_split: a streamed image folder needs eval_transform for its held-out part"
            )
        train_samples, val_samples = split_samples(dataset.samples, fraction, seed)
        _require_held_out(val_samples, len(dataset), fraction)
        return (ImageFolderDataset(train_samples, dataset.classes, dataset.transform),
                ImageFolderDataset(val_samples, dataset.classes, eval_transform))  # fmt: skip
    raise TypeError(
        f"holdout_split: cannot split a {type(dataset).__name__}; give a TensorImageDataset or an ImageFolderDataset"
    )


def _require_held_out(held_out: Sequence[Any], n: int, fraction: float) -> None:
    if not held_out:
        raise DataError(f"--val-split {fraction} of {n} training images leaves no image to hold out "
                         "(every class has a single image)")  # fmt: skip
