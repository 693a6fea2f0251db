"""CIFAR-10/100 in either of its real layouts: torchvision's pickled batches (``cifar-10-batches-py``,
``cifar-100-python``) or an image folder with ``train/`` and ``test/`` (CIFAR-10 as JPEGs), also as its
``.tar.gz``, which is extracted into zoo's data cache once.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.archive import extract_archive, is_archive
from zoo.data.folder import class_folders, eval_folder
from zoo.data.tensor import TensorImageDataset, TransformedImages
from zoo.errors import DataError

# torchvision's python format: folder, training files, test files, metadata file, label key, class-name key.
CIFAR_LAYOUTS = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def cifar_root(name: str, data_dir: Path) -> Path:
    """The folder holding ``name``'s batches folder: ``data_dir``, its ``name``/``NAME`` sub-folder, or the
    parent of the batches folder itself."""
    folder = CIFAR_LAYOUTS[name][0]
    if data_dir.name == folder:
        return data_dir.parent
    return next((r for r in (data_dir, data_dir / name, data_dir / name.upper()) if (r / folder).is_dir()), data_dir)


def load_cifar(
    name: str,
    data_dir: str | os.PathLike,
    split: str = "train",
    transform: Callable | None = None,
    download: bool = False,
    mean: tuple | None = None,
    std: tuple | None = None,
) -> Dataset:
    """CIFAR-10 or CIFAR-100 ``split`` (``train``/``test``) from torchvision's pickled batches under ``data_dir``:
    a :class:`TensorImageDataset`, or with ``transform`` its images as PIL images through it."""
    if split not in ("train", "test"):
        raise DataError(f"split={split!r}: {name} has the splits train, test")
    root = cifar_root(name, Path(data_dir).expanduser())
    folder, train_files, test_files, meta, label_key, class_key = CIFAR_LAYOUTS[name]
    files = [*train_files, *test_files, meta]
    missing = [f for f in files if not (root / folder / f).is_file()]
    if missing and download:  # through torchvision, which verifies the archive's md5 before extracting
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=True, download=True)
    elif missing:
        raise FileNotFoundError(
            f"{name}: torchvision's python-format batches not found: expected {', '.join(files)} in {root / folder} "
            f"(missing {', '.join(missing)}); pass --download to fetch them (needs internet), or give a folder with "
            "train/ and test/ image folders (CIFAR-10 as JPEGs), or its .tar.gz"
        )
    try:
        rows, labels = [], []
        for file in train_files if split == "train" else test_files:
            with open(root / folder / file, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            rows.append(entry["data"])
            labels += entry[label_key]
        with open(root / folder / meta, "rb") as f:
            classes = pickle.load(f, encoding="latin1")[class_key]
        # A row is the red plane, then green, then blue.
        images = torch.from_numpy(np.vstack(rows).reshape(-1, 3, 32, 32).astype(np.uint8, copy=False))
        targets = torch.tensor(labels, dtype=torch.long)
    except Exception as e:  # pickle, key and reshape errors from a malformed file
        raise DataError(f"{name}: could not read the batches in {root / folder}: {type(e).__name__}: {e}") from None
    if len(targets) != len(images) or (len(targets) and not 0 <= targets.min() <= targets.max() < len(classes)):
        raise DataError(f"{name}: labels in {root / folder} do not match the images or the {len(classes)} classes")
    if mean is None or std is None:
        from zoo.data import KINDS

        mean, std = KINDS[name].mean, KINDS[name].std
    dataset = TensorImageDataset(images, targets, classes, mean, std)
    return TransformedImages(dataset, transform) if transform else dataset


def _image_folders(root: Path, archive: Path) -> Path:
    """The folder holding ``train/`` and ``test/`` (or ``val/``) in an extracted ``archive``: ``root`` or a
    sub-folder of it."""
    found = next((c for c in (root, *sorted(p for p in root.iterdir() if p.is_dir())) if eval_folder(c)), None)
    if found is None:
        raise DataError(f"{archive} holds no train/ and test/ image folders (extracted into {root})")
    return found


def extract_cifar10_jpg(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Extract CIFAR-10 as JPEGs (``train/<class>/*.jpg``, ``test/<class>/*.jpg`` in a ``.tar.gz``) once, safely,
    into ``dest`` (default: zoo's data cache) and return the folder holding ``train/`` and ``test/``."""
    found = _image_folders(extract_archive(archive, dest), Path(archive))
    if len(class_folders(found / "train")) != 10:
        raise DataError(f"{archive}: CIFAR-10 has 10 classes, but {found / 'train'} does not have 10 class folders")
    return found


def find_cifar(name: str, data_dir: Path) -> tuple[str, Path] | None:
    """Where ``cifar10``/``cifar100`` is under ``data_dir``: ``("batches", root)`` for torchvision's pickled
    batches, ``("folder", root)`` for image folders ``root/train`` + ``root/test`` (or ``val/``), extracting a
    ``.tar.gz`` given as ``data_dir`` or found in it; None if neither. ``data_dir`` may be the layout itself or
    a folder holding it, directly or in ``cifar10/`` or ``CIFAR10/``."""
    batches = CIFAR_LAYOUTS[name][0]
    if is_archive(data_dir):
        return "folder", _image_folders(extract_archive(data_dir), data_dir)
    if data_dir.name == batches and data_dir.is_dir():
        return "batches", data_dir.parent
    roots = (data_dir, data_dir / name, data_dir / name.upper())
    for root in roots:
        if (root / batches).is_dir():
            return "batches", root
        if eval_folder(root) is not None:
            return "folder", root
    for root in roots:
        archives = sorted(p for p in root.glob(f"{name}*") if is_archive(p)) if root.is_dir() else []
        if len(archives) == 1:
            return find_cifar(name, archives[0])
    return None
