"""CIFAR-10/100 in either of its real layouts: torchvision's pickled batches (``cifar-10-batches-py``,
``cifar-100-python``) or an image folder with ``train/`` and ``test/`` (CIFAR-10 as JPEGs), also as its
``.tar.gz``, which :func:`extract_cifar10_jpg` unpacks into zoo's data cache once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from zoo.data.archive import extract_archive, is_archive
from zoo.data.folder import eval_folder
from zoo.errors import DataError
from zoo.models.cfg import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

__all__ = [
    "CIFAR_STATS",
    "LocalCIFAR10",
    "LocalCIFAR100",
    "cifar_files",
    "cifar_root",
    "extract_cifar10_jpg",
    "find_cifar",
    "load_cifar",
]

CIFAR_STATS = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
}


class LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR10, accepting local batches by presence instead of by the official md5 sums.

    Files written by other tools (or the tests' small batches in the same format) are accepted; a
    malformed one still fails while loading, with its name in the error. Downloads go through
    torchvision's own class, which checks the archive.
    """

    # torchvision checks a file against its md5 only when one is given: with None it checks presence.
    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class LocalCIFAR100(CIFAR100):
    """torchvision's CIFAR100, accepting local batches by presence (see :class:`LocalCIFAR10`)."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


def cifar_files(name: str) -> tuple[str, list[str]]:
    """The folder name and the files torchvision's format has for ``cifar10`` or ``cifar100``."""
    if name == "cifar10":
        return "cifar-10-batches-py", [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    return "cifar-100-python", ["train", "test", "meta"]


def cifar_root(name: str, data_dir: Path) -> Path:
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
        raise DataError(f"split={split!r}: {name} has the splits train, test")
    data_dir = Path(data_dir).expanduser()
    root = cifar_root(name, data_dir)
    folder, files = cifar_files(name)
    missing = [f for f in files if not (root / folder / f).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"{name}: torchvision's python-format batches not found: expected {', '.join(files)} in "
            f"{root / folder} (missing {', '.join(missing)}). Pass --download to fetch them (needs internet)."
        )
    if download and missing:
        # The download goes through torchvision, which verifies the archive's md5 before extracting.
        (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=True, download=True)

    try:
        cls = LocalCIFAR10 if name == "cifar10" else LocalCIFAR100
        ds = cls(str(root), train=split == "train", transform=transform)
    except Exception as e:  # pickle, key and reshape errors from a malformed file
        raise DataError(f"{name}: could not read the batches in {root / folder}: {type(e).__name__}: {e}") from None
    if ds.data.ndim != 4 or ds.data.shape[1:] != (32, 32, 3):
        raise DataError(f"{name}: images in {root / folder} have shape {ds.data.shape[1:]}, expected 32x32x3")
    n = len(ds.classes)
    if len(ds.targets) != len(ds.data) or (len(ds.targets) and not 0 <= min(ds.targets) <= max(ds.targets) < n):
        raise DataError(f"{name}: labels in {root / folder} do not match the images or the {n} classes")
    return ds


def _folder_layout(root: Path) -> bool:
    return (root / "train").is_dir() and eval_folder(root) is not None


def extract_cifar10_jpg(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Extract CIFAR-10 as JPEGs (``train/<class>/*.jpg``, ``test/<class>/*.jpg`` in a ``.tar.gz``) once and
    return the folder holding ``train/`` and ``test/``.

    The default ``dest`` is zoo's data cache (``ZOO_DATA_DIR``, default ``~/.cache/zoo/data``), under a name
    carrying the archive's SHA-256, so the second call returns at once. Extraction refuses absolute paths,
    ``..`` and links (:func:`zoo.data.archive.extract_archive`)::

        folder = extract_cifar10_jpg("../shared/data/CIFAR10/cifar10-jpg.tar.gz")
        # zoo train resnet20 --dataset cifar10 --data-dir <folder>  (or the .tar.gz itself)
    """
    root = extract_archive(archive, dest)
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    found = next((c for c in candidates if _folder_layout(c)), None)
    if found is None:
        raise DataError(f"{archive} holds no train/ and test/ image folders (extracted into {root})")
    classes = sorted(d.name for d in (found / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) != 10:
        raise DataError(f"{archive}: CIFAR-10 has 10 classes, but {found / 'train'} has {len(classes)} class folders")
    return found


def find_cifar(name: str, data_dir: Path) -> tuple[str, Path] | None:
    """Where ``cifar10``/``cifar100`` is under ``data_dir``: ``("batches", root)`` for torchvision's pickled
    batches (``root/cifar-10-batches-py``), ``("folder", root)`` for an image folder ``root/train`` +
    ``root/test`` (or ``val/``), extracting a ``.tar.gz`` given as ``data_dir`` or found in it; None if neither.

    ``data_dir`` may be the layout itself or a folder holding it directly, in ``cifar10/`` or ``CIFAR10/``.
    """
    batches, _ = cifar_files(name)
    if is_archive(data_dir):
        return "folder", extract_cifar10_jpg(data_dir) if name == "cifar10" else extract_archive(data_dir)
    if data_dir.name == batches and data_dir.is_dir():
        return "batches", data_dir.parent
    roots = (data_dir, data_dir / name, data_dir / name.upper())
    for root in roots:
        if (root / batches).is_dir():
            return "batches", root
        if _folder_layout(root):
            return "folder", root
    for root in roots:
        archives = sorted(p for p in root.glob(f"{name}*") if is_archive(p)) if root.is_dir() else []
        if len(archives) == 1:
            return find_cifar(name, archives[0])
    return None
