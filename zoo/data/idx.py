"""MNIST-style IDX files (MNIST, Fashion-MNIST): located in the layouts others use, and read."""

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
from zoo.utils import checks

_IDX_LIMIT = 1 << 30  # bytes of one IDX file, uncompressed: EMNIST's largest holds 0.6 GB
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
# Whose official file each SHA-256 (uncompressed) is: Fashion-MNIST's files given as MNIST (or back) are refused.
OFFICIAL_SHA256 = {
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db": "mnist",  # train-images-idx3-ubyte
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5": "mnist",  # train-labels-idx1-ubyte
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7": "mnist",  # t10k-images-idx3-ubyte
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2": "mnist",  # t10k-labels-idx1-ubyte
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888": "fashion_mnist",  # train-images-idx3-ubyte
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9": "fashion_mnist",  # train-labels-idx1-ubyte
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b": "fashion_mnist",  # t10k-images-idx3-ubyte
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34": "fashion_mnist",  # t10k-labels-idx1-ubyte
}


def _raw_idx(path: Path) -> bytes:
    """The bytes of an IDX file, gunzipped if it is gzipped, read with a bound (a gzip of a few MB can hold GBs)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        try:
            raw = (gzip.GzipFile(fileobj=f) if gzipped else f).read(_IDX_LIMIT + 1)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if len(raw) > _IDX_LIMIT:
        raise DataError(f"{path}: more than the {_IDX_LIMIT:,} bytes an IDX file may hold")
    return raw


def read_idx(path: str | os.PathLike, raw: bytes | None = None) -> torch.Tensor:
    """One IDX file (gzipped or not; ``raw``: its bytes, read) as a tensor of its stored shape; a truncated one is a
    DataError naming it."""
    path = Path(path)
    raw = _raw_idx(path) if raw is None else raw
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
    """``{"train": (images, labels), "test": (images, labels)}`` of ``name`` in ``data_dir``, in others' layouts."""
    data_dir = Path(data_dir).expanduser()
    # The folder itself (Debian's), its raw/ (torchvision's MNIST/), or a root of sub-folders (torchvision's).
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
    """MNIST or Fashion-MNIST ``split`` as an in-memory uint8 dataset, normalised with ``mean``/``std`` (or its own)."""
    classes = IDX_DATASETS[checks.one_of("name", name, tuple(IDX_DATASETS))][0]
    img_path, lbl_path = find_idx_files(name, data_dir)[checks.one_of("split", split, tuple(IDX_FILES))]
    img_raw, lbl_raw = _raw_idx(img_path), _raw_idx(lbl_path)
    for path, raw in ((img_path, img_raw), (lbl_path, lbl_raw)):
        other = OFFICIAL_SHA256.get(hashlib.sha256(raw).hexdigest(), name)
        if other != name:
            hint = f"use --dataset {other}, or point --data-dir at {name}'s files"
            raise DataError(f"{path} is {other}'s official file (by its SHA-256), not {name}'s", hint=hint)
    images, labels = read_idx(img_path, img_raw), read_idx(lbl_path, lbl_raw)
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise DataError(f"{img_path}: expected uint8 images (N, H, W), got {images.dtype} {tuple(images.shape)}")
    labels = labels.long()
    n = len(classes)
    if labels.dim() != 1 or len(labels) != len(images) or (len(labels) and not 0 <= labels.min() <= labels.max() < n):
        raise DataError(f"{lbl_path}: expected {len(images)} labels in 0..{n - 1}, got {tuple(labels.shape)}")
    if mean is None or std is None:
        from zoo.data import KINDS

        mean, std = KINDS[name].mean, KINDS[name].std
    return TensorImageDataset(images.unsqueeze(1), labels, classes, mean, std)
