"""Tiny datasets written in the real on-disk formats: IDX (gzipped or not), CIFAR pickles, image folders.

The images are learnable (each class puts a bright square in its own place), so a few training steps
move the accuracy well above chance.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file: magic 0x0000 08 ndim, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def class_images(labels: np.ndarray, size: int = 28, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 images ``(N, size, size[, channels])``: noise plus a bright square placed by the class."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    images = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    sq = max(2, size // 5)
    for i, k in enumerate(labels):
        r = (int(k) // 5) * (size // 2) + rng.integers(0, size // 2 - sq + 1)
        c = (int(k) % 5) * (size // 5) + rng.integers(0, max(1, size // 5 - sq + 1))
        images[i, r : r + sq, c : c + sq, :] = 255
    return images if channels > 1 else images[..., 0]


def make_idx_dataset(folder: Path, n_train: int = 320, n_test: int = 80, gz: bool = True, seed: int = 0) -> Path:
    """The four MNIST-style IDX files in ``folder``, with balanced labels 0..9."""
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        np.random.default_rng(seed + 7).shuffle(labels)
        images = class_images(labels, seed=seed + (split == "test"))
        img_name, lbl_name = IDX_NAMES[split]
        write_idx(folder / img_name, images, gz)
        write_idx(folder / lbl_name, labels, gz)
    return folder


def make_cifar(root: Path, name: str = "cifar10", per_batch: int = 20, n_test: int = 40, seed: int = 0) -> Path:
    """torchvision's python-format CIFAR folder under ``root`` (``cifar-10-batches-py`` or ``cifar-100-python``)."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, classes = root / "cifar-10-batches-py", [f"class{i}" for i in range(10)]
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key, meta_name, meta_key = "labels", "batches.meta", "label_names"
    else:
        folder, classes = root / "cifar-100-python", [f"fine{i}" for i in range(100)]
        files = ["train", "test"]
        label_key, meta_name, meta_key = "fine_labels", "meta", "fine_label_names"
    folder.mkdir(parents=True, exist_ok=True)
    for fn in files:
        n = n_test if fn in ("test_batch", "test") else per_batch
        labels = rng.integers(0, len(classes), size=n)
        hwc = class_images(labels % 10, size=32, channels=3, seed=int(rng.integers(1 << 30)))
        # A row is the red plane, then green, then blue (1024 bytes each), as in the official batches.
        rows = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)
        entry = {"data": rows, label_key: labels.tolist(), "batch_label": fn}
        with open(folder / fn, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / meta_name, "wb") as f:
        pickle.dump({meta_key: classes}, f)
    return folder


def make_image_folder(root: Path, classes=("cat", "dog", "fish"), per_class: int = 6, size: int = 20) -> list[Path]:
    """``root/<class>/img*.png|jpg`` real images; returns the paths written."""
    from PIL import Image

    paths = []
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        images = class_images(np.full(per_class, k), size=size, channels=3, seed=k)
        for i, arr in enumerate(images):
            ext = "png" if i % 2 == 0 else "jpg"
            p = root / name / f"img{i}.{ext}"
            Image.fromarray(arr).save(p)
            paths.append(p)
    return paths


def run_zoo(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None):
    """``python -m zoo train``-style subprocess (``args[0]`` is the module), output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or ROOT
    )
