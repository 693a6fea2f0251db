"""CIFAR-10/100 in torchvision's on-disk format (``cifar-10-batches-py``, ``cifar-100-python``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

__all__ = ["CIFAR_STATS", "LocalCIFAR10", "LocalCIFAR100", "cifar_files", "cifar_root", "load_cifar"]

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
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
        raise ValueError(f"split={split!r}: {name} has the splits train, test")
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
        raise ValueError(f"{name}: could not read the batches in {root / folder}: {type(e).__name__}: {e}") from None
    if ds.data.ndim != 4 or ds.data.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name}: images in {root / folder} have shape {ds.data.shape[1:]}, expected 32x32x3")
    n = len(ds.classes)
    if len(ds.targets) != len(ds.data) or (len(ds.targets) and not 0 <= min(ds.targets) <= max(ds.targets) < n):
        raise ValueError(f"{name}: labels in {root / folder} do not match the images or the {n} classes")
    return ds
