"""Datasets for training and evaluation: MNIST-style IDX files, CIFAR-10/100 and image folders.

MNIST and Fashion-MNIST are decoded once into a uint8 tensor (:class:`TensorImageDataset`) and batched,
augmented and normalised as whole tensors by :class:`TensorLoader`: at 28x28 the per-sample Python and PIL
work of a ``DataLoader`` costs more than the model itself. CIFAR (torchvision's pickled batches) and image
folders go through an ordinary ``DataLoader`` with workers and per-sample transforms.

``create_datasets(name, data_dir, ...)`` builds the train and validation sets for the ``zoo train`` and
``zoo eval`` commands; each set carries ``classes`` (label names) and the normalisation it uses.
"""

from __future__ import annotations

import gzip
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DATASETS",
    "DataInfo",
    "ImageFolderDataset",
    "TensorImageDataset",
    "TensorLoader",
    "create_datasets",
    "find_idx_files",
    "load_idx_dataset",
    "read_idx",
    "scan_image_folder",
    "verify_images",
]

# ---------------------------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

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
class _IdxSpec:
    folders: tuple[str, ...]  # sub-folder names used by torchvision, Debian and others
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


_IDX_SPECS = {
    "mnist": _IdxSpec(("MNIST", "mnist"), tuple(str(i) for i in range(10)), (0.1307,), (0.3081,)),
    "fashion_mnist": _IdxSpec(
        ("FashionMNIST", "fashion-mnist", "fashion_mnist", "Fashion-MNIST"), FASHION_MNIST_CLASSES, (0.2860,), (0.3530,)
    ),
}


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a tensor of its stored shape.

    The header is checked against the file size, so a truncated download is an error naming the file
    rather than a silently short dataset.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header is truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
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
    spec = _IDX_SPECS[name]
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
    if name not in _IDX_SPECS:
        raise ValueError(f"unknown IDX dataset {name!r}; choose one of {', '.join(_IDX_SPECS)}")
    if split not in IDX_FILES:
        raise ValueError(f"split={split!r}: {name} has the splits {', '.join(IDX_FILES)}")
    spec = _IDX_SPECS[name]
    img_path, lbl_path = find_idx_files(name, data_dir)[split]
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"{img_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dim() != 1 or len(labels) != len(images):
        raise ValueError(
            f"{lbl_path}: expected {len(images)} labels to match {img_path.name}, got {tuple(labels.shape)}"
        )
    labels = labels.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(spec.classes)):
        raise ValueError(f"{lbl_path}: labels must lie in 0..{len(spec.classes) - 1}")
    return TensorImageDataset(images.unsqueeze(1), labels, spec.classes, spec.mean, spec.std)


# ---------------------------------------------------------------------------------------------------------------
# In-memory tensors and their batch loader


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor ``(N, C, H, W)`` with integer ``targets``.

    Indexing returns a normalised float image and its label, so the set works with any ``DataLoader``;
    :class:`TensorLoader` batches it faster by slicing the tensor directly.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.classes = list(classes)
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalize(self.images[index : index + 1], self.mean, self.std)[0], int(self.targets[index])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: torch.Tensor) -> TensorImageDataset:
        """A new dataset of the given rows (shares nothing that later augmentation could modify)."""
        return TensorImageDataset(self.images[indices], self.targets[indices], self.classes, self.mean, self.std)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float, scaled to [0, 1] and standardised per channel."""
    x = images.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset in ``[-max_shift, max_shift]`` pixels (zero fill).

    One gather over the padded batch: the same as a per-sample RandomCrop with padding, without a loop.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=generator).to(images.device)
    rows = dy + torch.arange(h, device=images.device)
    cols = dx + torch.arange(w, device=images.device)
    n_idx = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    c_idx = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[n_idx, c_idx, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def random_hflip(images: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``prob``."""
    flip = (torch.rand(len(images), generator=generator) < prob).to(images.device)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


class TensorLoader:
    """Batches of a :class:`TensorImageDataset`, augmented and normalised as whole tensors.

    The order and the augmentation of batch ``b`` of epoch ``e`` depend only on ``(seed, e, b)``, so a run
    resumed at an epoch boundary, or one that skips the first batches of an epoch, sees the same batches as
    an uninterrupted one. With ``world_size > 1`` each rank takes every ``world_size``-th sample of the
    shuffled order (padded, as ``DistributedSampler`` does, when ``pad`` is set).
    """

    def __init__(
        self,
        dataset: TensorImageDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        shift: int = 0,
        hflip: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.shift = int(shift)
        self.hflip = float(hflip)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.device = torch.device(device)
        self.epoch = 0
        self.start_batch = 0
        self._images = dataset.images.to(self.device)
        self._targets = dataset.targets.to(self.device)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle order; ``start_batch`` skips batches already trained on."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.pad:
                total = math.ceil(n / self.world_size) * self.world_size
                order = torch.cat([order, order[: total - n]]) if total > n else order
            order = order[self.rank :: self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._indices().to(self.device)
        g = torch.Generator()
        for b in range(self.start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self._images[idx]
            if self.shift or self.hflip:
                g.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + b) % (2**63))
                if self.shift:
                    x = random_shift(x, self.shift, g)
                if self.hflip:
                    x = random_hflip(x, self.hflip, g)
            yield normalize(x, self.dataset.mean, self.dataset.std), self._targets[idx]
        self.start_batch = 0


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10/100 in torchvision's on-disk format

_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@contextmanager
def _presence_check_only() -> Iterator[None]:
    """Make torchvision's CIFAR classes accept files by presence instead of by the official md5 sums.

    torchvision refuses any file whose md5 differs from the official archive's; files written by other
    tools (or the tests' small batches in the same format) are accepted here, and a malformed one still
    fails while loading, with its name in the error. The datasets built meanwhile are plain torchvision
    objects (picklable for spawned workers).
    """
    import torchvision.datasets.cifar as tv_cifar

    original = tv_cifar.check_integrity
    tv_cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
    try:
        yield
    finally:
        tv_cifar.check_integrity = original


def cifar_files(name: str) -> tuple[str, list[str]]:
    """The folder name and the files torchvision's format has for ``cifar10`` or ``cifar100``."""
    if name == "cifar10":
        return "cifar-10-batches-py", [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    return "cifar-100-python", ["train", "test", "meta"]


def _cifar_root(name: str, data_dir: Path) -> Path:
    folder, _ = cifar_files(name)
    if data_dir.name == folder:
        return data_dir.parent
    for root in (data_dir, data_dir / name, data_dir / name.upper()):
        if (root / folder).is_dir():
            return root
    return data_dir


def load_cifar(
    name: str,
    data_dir: str | os.PathLike,
    split: str = "train",
    transform: Callable | None = None,
    download: bool = False,
) -> Dataset:
    """CIFAR-10 or CIFAR-100 ``split`` (``train``/``test``) from torchvision's pickled batches under ``data_dir``."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: {name} has the splits train, test")
    data_dir = Path(data_dir).expanduser()
    root = _cifar_root(name, data_dir)
    folder, files = cifar_files(name)
    missing = [f for f in files if not (root / folder / f).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"{name}: torchvision's python-format batches not found: expected {', '.join(files)} in "
            f"{root / folder} (missing {', '.join(missing)}). Pass --download to fetch them (needs internet)."
        )
    if download and missing:
        # The download goes through torchvision, which verifies the archive's md5 before extracting.
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=True, download=True)

    from torchvision.datasets import CIFAR10, CIFAR100

    try:
        with _presence_check_only():
            ds = (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=split == "train", transform=transform)
    except Exception as e:  # pickle, key and reshape errors from a malformed file
        raise ValueError(f"{name}: could not read the batches in {root / folder}: {type(e).__name__}: {e}") from None
    if ds.data.ndim != 4 or ds.data.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name}: images in {root / folder} have shape {ds.data.shape[1:]}, expected 32x32x3")
    n = len(ds.classes)
    if len(ds.targets) != len(ds.data) or (len(ds.targets) and not 0 <= min(ds.targets) <= max(ds.targets) < n):
        raise ValueError(f"{name}: labels in {root / folder} do not match the images or the {n} classes")
    return ds


# ---------------------------------------------------------------------------------------------------------------
# Image folders

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan_image_folder(
    root: str | os.PathLike, classes: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted sub-folder names) and ``(path, label)`` samples of a one-folder-per-class tree."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"image folder {root} has no class sub-folders; expected {root}/<class>/<image>.png")
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(f"{root} has class folders {unknown} that the training set does not have")
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for name in found:
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(dirpath, fn), index[name]))
    if not samples:
        raise FileNotFoundError(f"image folder {root} has no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    return list(classes), samples


def _check_image(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # structure and checksums, without decoding
        with Image.open(path) as im:
            im.draft(im.mode, (64, 64))  # JPEG decodes at reduced scale: fast, still reads the whole stream
            im.load()
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def verify_images(
    samples: Sequence[tuple[str, int]], strict: bool = False, workers: int = 4
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Open and decode every image once; return the readable samples and ``(path, reason)`` of the others.

    With ``strict`` any unreadable image is a ValueError listing them; otherwise they are reported on
    stderr and left out, so a corrupt file is never found deep inside a loader worker.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(_check_image, [p for p, _ in samples]))
    bad = [(p, r) for (p, _), r in zip(samples, reasons, strict=True) if r is not None]
    good = [s for s, r in zip(samples, reasons, strict=True) if r is None]
    if bad:
        listing = "\n".join(f"  {p}: {r}" for p, r in bad)
        if strict:
            raise ValueError(f"{len(bad)} unreadable image(s):\n{listing}")
        print(f"warning: skipping {len(bad)} unreadable image(s):\n{listing}", file=sys.stderr)
    return good, bad


class ImageFolderDataset(Dataset):
    """``(path, label)`` samples read with PIL as RGB and passed through ``transform``.

    An image that fails to load (one that broke after :func:`verify_images`) is reported once and replaced
    by the next readable sample, so a worker never dies on it.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], classes: Sequence[str], transform: Callable | None = None):
        if not samples:
            raise ValueError("an image folder dataset needs at least one image")
        self.samples = list(samples)
        self.targets = [t for _, t in self.samples]
        self.classes = list(classes)
        self.transform = transform
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        for attempt in range(min(len(self.samples), 16)):
            path, target = self.samples[(index + attempt) % len(self.samples)]
            try:
                with Image.open(path) as im:
                    img = im.convert("RGB")
            except Exception as e:
                if path not in self._reported:
                    self._reported.add(path)
                    warnings.warn(f"skipping unreadable image {path}: {e}", stacklevel=2)
                continue
            return (self.transform(img) if self.transform else img), target
        raise RuntimeError(f"no readable image near index {index} of {len(self.samples)}")


def split_samples(
    samples: Sequence[tuple[str, int]], fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """A seeded per-class split: about ``fraction`` of each class goes to validation (at least one image
    from every class with two or more)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--val-split must be a fraction in (0, 1), got {fraction}")
    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(samples):
        by_class.setdefault(label, []).append(i)
    g = torch.Generator().manual_seed(seed)
    val_idx: set[int] = set()
    for label in sorted(by_class):
        idx = by_class[label]
        k = round(len(idx) * fraction)
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1)
        perm = torch.randperm(len(idx), generator=g)[:k].tolist()
        val_idx.update(idx[p] for p in perm)
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


# ---------------------------------------------------------------------------------------------------------------
# One entry point for the command line


@dataclass
class Augment:
    """Training augmentation, from the recipe: translation/crop padding, flip, RandAugment."""

    crop_pad: int = 0
    hflip: float = 0.0
    rand_augment: str = ""


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


def _cifar_transform(train: bool, aug: Augment, mean: Sequence[float], std: Sequence[float]) -> Callable:
    from torchvision import transforms as T

    ops: list[Callable] = []
    if train:
        if aug.crop_pad:
            ops.append(T.RandomCrop(32, padding=aug.crop_pad))
        if aug.hflip:
            ops.append(T.RandomHorizontalFlip(aug.hflip))
        if aug.rand_augment:
            from timm.data.auto_augment import rand_augment_transform

            ops.append(rand_augment_transform(aug.rand_augment, {"img_mean": tuple(round(255 * m) for m in mean)}))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def folder_transforms(
    cfg: dict[str, Any], aug: Augment, eval_transform: Callable | None = None
) -> tuple[Callable, Callable]:
    """timm's train and eval transforms at the model's input size and normalisation."""
    from timm.data import create_transform

    size = tuple(cfg["input_size"])
    common = {
        "interpolation": cfg.get("interpolation", "bilinear"),
        "mean": tuple(cfg["mean"]),
        "std": tuple(cfg["std"]),
    }
    train_tf = create_transform(
        size, is_training=True, hflip=aug.hflip, auto_augment=aug.rand_augment or None, color_jitter=0.0, **common
    )
    if eval_transform is None:
        eval_transform = create_transform(size, is_training=False, crop_pct=cfg.get("crop_pct", 0.875), **common)
    return train_tf, eval_transform


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

    if kind in _IDX_SPECS:
        train = load_idx_dataset(kind, folder, "train") if want_train else None
        val = load_idx_dataset(kind, folder, "test") if want_val else None
        ref = train or val
        assert ref is not None
        if normalization:
            for ds in (train, val):
                if ds is not None:
                    ds.mean, ds.std = tuple(normalization[0]), tuple(normalization[1])
        root = str(find_idx_files(kind, folder)["train"][0].parent)
        info = DataInfo(kind, len(ref.classes), ref.input_size[0], ref.input_size, ref.classes, ref.mean, ref.std, root)
        return train, val, info

    if kind in _CIFAR_STATS:
        mean, std = normalization or _CIFAR_STATS[kind]
        train_tf = _cifar_transform(True, aug, mean, std)
        val_tf = eval_transform or _cifar_transform(False, aug, mean, std)
        train = load_cifar(kind, folder, "train", train_tf, download) if want_train else None
        val = load_cifar(kind, folder, "test", val_tf, download) if want_val else None
        ref = train or val
        root = str(_cifar_root(kind, folder))
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
