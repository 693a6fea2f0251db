"""MNIST-style IDX files (MNIST, Fashion-MNIST): read, located in the layouts others use, and decoded once."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.data.tensor import TensorImageDataset
from zoo.errors import DataError
from zoo.models.cfg import FASHION_MNIST_MEAN, FASHION_MNIST_STD, MNIST_MEAN, MNIST_STD

__all__ = [
    "FASHION_MNIST_CLASSES", "IDX_DATASETS", "IDX_FILES", "OFFICIAL_SHA256", "find_idx_files", "identify_idx",
    "load_idx_dataset", "read_idx",
]  # fmt: skip

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass(frozen=True)
class IdxSpec:
    folders: tuple[str, ...]  # sub-folder names used by torchvision, Debian and others
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


IDX_DATASETS = {
    "mnist": IdxSpec(("MNIST", "mnist"), tuple(str(i) for i in range(10)), MNIST_MEAN, MNIST_STD),
    "fashion_mnist": IdxSpec(
        ("FashionMNIST", "fashion-mnist", "fashion_mnist", "Fashion-MNIST"),
        FASHION_MNIST_CLASSES,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
    ),
}


# SHA-256 of the official files, uncompressed: a folder is recognised by what it holds, not by its name, so that
# Fashion-MNIST's files given as MNIST (or the other way round) are refused rather than trained on.
OFFICIAL_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def _raw_idx(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a tensor of its stored shape.

    The header is checked against the file size, so a truncated download is an error naming the file
    rather than a silently short dataset.
    """
    path = Path(path)
    return _parse_idx(path, _raw_idx(path))


def identify_idx(raw: bytes, stem: str) -> str | None:
    """Whose official file ``raw`` (uncompressed) is, by its SHA-256: ``mnist``, ``fashion_mnist`` or None."""
    digest = hashlib.sha256(raw).hexdigest()
    return next((name for name, files in OFFICIAL_SHA256.items() if files.get(stem) == digest), None)


def _parse_idx(path: Path, raw: bytes) -> torch.Tensor:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX header promises shape {shape} ({expected} bytes) but the file has {len(raw)} bytes"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _idx_candidates(data_dir: Path, folders: Sequence[str]) -> list[Path]:
    # The folder itself (Debian's /usr/share/datasets/fashion-mnist), its raw/ (torchvision's MNIST/), or
    # a root holding one sub-folder per dataset (torchvision's root).
    out = [data_dir, data_dir / "raw"]
    for name in folders:
        out += [data_dir / name / "raw", data_dir / name]
    return out


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_files(name: str, data_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Locate the four IDX files of ``name`` (``mnist`` or ``fashion_mnist``) under ``data_dir``.

    Returns ``{"train": (images, labels), "test": (images, labels)}``. Raises FileNotFoundError listing the
    expected file names and every folder searched.
    """
    spec = IDX_DATASETS[name]
    data_dir = Path(data_dir).expanduser()
    stems = [s for pair in IDX_FILES.values() for s in pair]
    for folder in _idx_candidates(data_dir, spec.folders):
        found = {s: _find_file(folder, s) for s in stems}
        if all(found.values()):
            return {split: (found[img], found[lbl]) for split, (img, lbl) in IDX_FILES.items()}  # type: ignore[misc]
        if any(found.values()):
            missing = [s for s, p in found.items() if p is None]
            raise FileNotFoundError(f"{name}: {folder} has only part of the dataset; missing {', '.join(missing)}[.gz]")
    searched = "\n  ".join(str(p) for p in _idx_candidates(data_dir, spec.folders))
    raise FileNotFoundError(
        f"{name}: IDX files not found. Expected {', '.join(s + '[.gz]' for s in stems)} in one of:\n  {searched}"
    )


def load_idx_dataset(name: str, data_dir: str | os.PathLike, split: str = "train") -> TensorImageDataset:
    """MNIST or Fashion-MNIST ``split`` (``train`` or ``test``) as an in-memory uint8 dataset."""
    if name not in IDX_DATASETS:
        raise DataError(f"unknown IDX dataset {name!r}; choose one of {', '.join(IDX_DATASETS)}")
    if split not in IDX_FILES:
        raise DataError(f"split={split!r}: {name} has the splits {', '.join(IDX_FILES)}")
    spec = IDX_DATASETS[name]
    img_path, lbl_path = find_idx_files(name, data_dir)[split]
    img_raw, lbl_raw = _raw_idx(img_path), _raw_idx(lbl_path)
    for path, raw, stem in ((img_path, img_raw, IDX_FILES[split][0]), (lbl_path, lbl_raw, IDX_FILES[split][1])):
        other = identify_idx(raw, stem)
        if other is not None and other != name:
            raise DataError(
                f"{path} is {_NAMES[other]}'s {stem} (its SHA-256 is the official file's), not {_NAMES[name]}'s",
                hint=f"use --dataset {other}, or point --data-dir at {_NAMES[name]}'s files",
            )
    images, labels = _parse_idx(img_path, img_raw), _parse_idx(lbl_path, lbl_raw)
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise DataError(
            f"{img_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dim() != 1 or len(labels) != len(images):
        raise DataError(
            f"{lbl_path}: expected {len(images)} labels to match {img_path.name}, got {tuple(labels.shape)}"
        )
    labels = labels.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(spec.classes)):
        raise DataError(f"{lbl_path}: labels must lie in 0..{len(spec.classes) - 1}")
    return TensorImageDataset(images.unsqueeze(1), labels, spec.classes, spec.mean, spec.std)
