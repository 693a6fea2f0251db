"""CIFAR-10/100 as torchvision's pickled batches (``cifar-10-batches-py``, ``cifar-100-python``) or as image folders
``train/`` and ``test/`` (CIFAR-10 as JPEGs), also in a ``.tar.gz``, extracted into zoo's data cache once."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.archive import extract_archive, is_archive
from zoo.data.folder import class_folders, eval_folder
from zoo.data.tensor import TensorImageDataset, TransformedImages
from zoo.errors import DataError

# torchvision's python format: folder, training files, test files, metadata file, label key, class-name key.
_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", _CIFAR10_TRAIN, ["test_batch"], "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
_NUMPY_NAMES = ("ndarray", "dtype", "_reconstruct")  # what a pickled numpy array names


class _Batch(pickle.Unpickler):
    """A CIFAR batch file: dicts, lists and numpy arrays only (a pickle may name any function for loading to call)."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return _Batch(f, encoding="latin1").load()


def load_cifar(
    name: str,
    data_dir: str | os.PathLike,
    split: str = "train",
    transform: Callable | None = None,
    download: bool = False,
    mean: tuple | None = None,
    std: tuple | None = None,
) -> Dataset:
    """CIFAR-10/100 ``split`` from torchvision's batches as a TensorImageDataset (with ``transform``: PIL images)."""
    if split not in ("train", "test"):
        raise DataError(f"split={split!r}: {name} has the splits train, test")
    found = find_cifar(name, Path(data_dir).expanduser())
    root = found[1] if found and found[0] == "batches" else Path(data_dir).expanduser()
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
        entries = [_unpickle(root / folder / file) for file in (train_files if split == "train" else test_files)]
        classes = _unpickle(root / folder / meta)[class_key]
        # A row is the red plane, then green, then blue.
        images = np.vstack([entry["data"] for entry in entries]).reshape(-1, 3, 32, 32).astype(np.uint8, copy=False)
        targets = torch.tensor([label for entry in entries for label in entry[label_key]], dtype=torch.long)
    except Exception as e:  # pickle, key and reshape errors from a malformed file
        raise DataError(f"{name}: could not read the batches in {root / folder}: {type(e).__name__}: {e}") from None
    if len(targets) != len(images) or (len(targets) and not 0 <= targets.min() <= targets.max() < len(classes)):
        raise DataError(f"{name}: labels in {root / folder} do not match the images or the {len(classes)} classes")
    if mean is None or std is None:
        from zoo.data import KINDS

        mean, std = KINDS[name].mean, KINDS[name].std
    dataset = TensorImageDataset(torch.from_numpy(images), targets, classes, mean, std)
    return TransformedImages(dataset, transform) if transform else dataset


def _image_folders(root: Path, archive: Path) -> Path:
    """The folder holding ``train/`` and ``test/`` (or ``val/``) in ``archive``'s extraction ``root``."""
    found = next((c for c in (root, *sorted(p for p in root.iterdir() if p.is_dir())) if eval_folder(c)), None)
    if found is None:
        raise DataError(f"{archive} holds no train/ and test/ image folders (extracted into {root})")
    return found


def extract_cifar10_jpg(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Extract CIFAR-10 as JPEGs (``train/`` and ``test/`` in a ``.tar.gz``) once into ``dest``; the folder of both."""
    found = _image_folders(extract_archive(archive, dest), Path(archive))
    if len(class_folders(found / "train")) != 10:
        raise DataError(f"{archive}: CIFAR-10 has 10 classes, but {found / 'train'} does not have 10 class folders")
    return found


def find_cifar(name: str, data_dir: Path) -> tuple[str, Path] | None:
    """``("batches", root)`` or ``("folder", root)``: where ``name``'s pickled batches or image folders are in
    ``data_dir``, its ``name/`` or ``NAME/`` (a ``.tar.gz`` given or found there extracted); None if neither."""
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
