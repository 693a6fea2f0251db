"""MNIST-style IDX files (MNIST, Fashion-MNIST): read, located in the layouts others use, and decoded once."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from zoo.data.tensor import TensorImageDataset
from zoo.errors import DataError

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Each set's class names and the sub-folder names torchvision, Debian and others keep its files in.
IDX_DATASETS = {
    "mnist": (tuple(str(i) for i in range(10)), ("MNIST", "mnist")),
    "fashion_mnist": (FASHION_MNIST_CLASSES, ("FashionMNIST", "fashion-mnist", "fashion_mnist", "Fashion-MNIST")),
}
_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

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


def _raw_idx(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """One IDX file (gzipped or not) as a tensor of its stored shape; a header that does not match the file's
    size (a truncated download) is a DataError naming the file."""
    path = Path(path)
    return _parse_idx(path, _raw_idx(path))


def _parse_idx(path: Path, raw: bytes) -> torch.Tensor:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: IDX header promises shape {shape} ({expected} bytes) but the file has {len(raw)}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def find_idx_files(name: str, data_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """``{"train": (images, labels), "test": (images, labels)}`` of ``mnist`` or ``fashion_mnist`` under
    ``data_dir``; FileNotFoundError lists the expected file names and every folder searched."""
    data_dir = Path(data_dir).expanduser()
    # The folder itself (Debian's /usr/share/datasets/fashion-mnist), its raw/ (torchvision's MNIST/), or a root
    # holding one sub-folder per dataset (torchvision's root).
    candidates = [data_dir, data_dir / "raw"]
    for sub in IDX_DATASETS[name][1]:
        candidates += [data_dir / sub / "raw", data_dir / sub]
    stems = [s for pair in IDX_FILES.values() for s in pair]
    for folder in candidates:
        found = {s: next((folder / n for n in (s + ".gz", s) if (folder / n).is_file()), None) for s in stems}
        if all(found.values()):
            return {split: (found[img], found[lbl]) for split, (img, lbl) in IDX_FILES.items()}  # type: ignore[misc]
        if any(found.values()):
            missing = [s for s, p in found.items() if p is None]
            raise FileNotFoundError(f"{name}: {folder} has only part of the dataset; missing {', '.join(missing)}[.gz]")
    searched = "\n  ".join(map(str, candidates))
    raise FileNotFoundError(
        f"{name}: IDX files not found. Expected {', '.join(s + '[.gz]' for s in stems)} in one of:\n  {searched}"
    )


def load_idx_dataset(
    name: str, data_dir: str | os.PathLike, split: str = "train", mean: tuple | None = None, std: tuple | None = None
) -> TensorImageDataset:
    """MNIST or Fashion-MNIST ``split`` (``train`` or ``test``) as an in-memory uint8 dataset, normalised with
    ``mean`` and ``std`` (default: the data set's own)."""
    if name not in IDX_DATASETS or split not in IDX_FILES:
        raise DataError(f"{name!r} split {split!r}: choose one of {', '.join(IDX_DATASETS)}, split train or test")
    classes = IDX_DATASETS[name][0]
    img_path, lbl_path = find_idx_files(name, data_dir)[split]
    img_raw, lbl_raw = _raw_idx(img_path), _raw_idx(lbl_path)
    for path, raw, stem in ((img_path, img_raw, IDX_FILES[split][0]), (lbl_path, lbl_raw, IDX_FILES[split][1])):
        digest = hashlib.sha256(raw).hexdigest()
        other = next((n for n, files in OFFICIAL_SHA256.items() if files.get(stem) == digest), name)
        if other != name:
            raise DataError(
                f"{path} is {_NAMES[other]}'s {stem} (its SHA-256 is the official file's), not {_NAMES[name]}'s",
                hint=f"use --dataset {other}, or point --data-dir at {_NAMES[name]}'s files",
            )
    images, labels = _parse_idx(img_path, img_raw), _parse_idx(lbl_path, lbl_raw)
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise DataError(f"{img_path}: expected uint8 images (N, H, W), got {images.dtype} {tuple(images.shape)}")
    if labels.dim() != 1 or len(labels) != len(images):
        raise DataError(
            f"{lbl_path}: expected {len(images)} labels to match {img_path.name}, got {tuple(labels.shape)}"
        )
    labels = labels.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{lbl_path}: labels must lie in 0..{len(classes) - 1}")
    if mean is None or std is None:
        from zoo.data import KINDS

        mean, std = KINDS[name].mean, KINDS[name].std
    return TensorImageDataset(images.unsqueeze(1), labels, classes, mean, std)
