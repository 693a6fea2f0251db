"""Image folders: one sub-folder per class, scanned, verified once, split and read with PIL."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.transforms import to_8_bit, to_rgb
from zoo.errors import DataError
from zoo.utils.checks import Invalid, is_number

# What to do about unreadable images, said wherever a folder is checked.
SKIP_HINT = "remove or replace them, or leave them out: zoo train/eval --skip-bad-images (strict_images=False)"

# torchvision's IMG_EXTENSIONS (tests/test_data.py checks they agree), here so that importing zoo.data
# does not import torchvision.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# The sub-folder beside train/ that an image folder is evaluated on, in order of preference: a validation
# split before a test split.
EVAL_FOLDERS = ("val", "validation", "test")


def eval_folder(root: str | os.PathLike) -> Path | None:
    """``root/val``, ``root/validation`` or ``root/test``, the first that exists, when ``root/train`` exists."""
    root = Path(root)
    if not (root / "train").is_dir():
        return None
    return next((root / d for d in EVAL_FOLDERS if (root / d).is_dir()), None)


def class_folders(root: Path) -> list[str]:
    """The class names of an image folder: its sub-folders (links to folders too), sorted, hidden ones left out;
    none when ``root`` is not a folder."""
    if not root.is_dir():
        return []
    return sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))


def scan_image_folder(
    root: str | os.PathLike, classes: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted sub-folder names) and ``(path, label)`` samples of a one-folder-per-class tree.

    The samples are what torchvision's ``ImageFolder`` lists, each real file and folder once (loops and second
    links add nothing); a link to the image folder or a folder above it is refused. ``classes`` maps the folders
    onto another tree's labels (``val/`` onto ``train/``'s). Every class needs a readable image, and a training
    tree (``classes`` None) two classes or more.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    found = class_folders(root)
    if not found:
        raise FileNotFoundError(f"image folder {root} has no class sub-folders; expected {root}/<class>/<image>.png")
    training = classes is None
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{root} has class folders {unknown} that the training set does not have")
    index = {c: i for i, c in enumerate(classes)}
    listed = [(path, real, index[name]) for name in found for path, real in _class_images(root, root / name)]
    # One sample per real file: where links give a file several names, a name that is not a link is kept.
    keep: dict[str, tuple[str, bool]] = {}
    for path, real, _ in listed:
        plain = not os.path.islink(path)
        if real not in keep or (plain and not keep[real][1]):
            keep[real] = (path, plain)
    samples = [(path, label) for path, real, label in listed if keep[real][0] == path]
    held = {label for _, label in samples}
    empty = [name for name in found if index[name] not in held]
    if not samples:
        raise FileNotFoundError(f"image folder {root} has no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    # In val/ or test/ an empty class folder is one whose images went missing: the other classes alone are scored.
    why = "a class without images cannot be learned" if training else "its images are missing from this tree"
    if empty:
        raise DataError(
            f"image folder {root}: class folder(s) {', '.join(empty)} hold no images",
            hint=f"add images to them or remove them: {why}",
        )
    # A class whose every file is unreadable is empty once --skip-bad-images leaves them out (and without it,
    # skipping would not help): found here, before any file is skipped, by one readable image per class.
    unreadable = _classes_without_readable_images(samples, found, index)
    if unreadable:
        # One line: each class with its count and the first file's reason (they are usually all alike).
        listing = "; ".join(
            f"{name}: {len(bad)} file(s), e.g. {bad[0][0]}: {bad[0][1]}" for name, bad in unreadable.items()
        )
        raise DataError(
            f"image folder {root}: class folder(s) {', '.join(unreadable)} hold no readable images ({listing})",
            hint=f"add readable images to them or remove them: {why}",
        )
    if training and len(classes) < 2:
        raise DataError(
            f"image folder {root} has one class ({classes[0]}): a classifier needs two or more",
            hint="add a folder of images for each other class",
        )
    return list(classes), samples


def _holds(real: str, real_root: str) -> bool:
    """Whether the real folder ``real`` is the image folder ``real_root`` or a folder above it."""
    return real == real_root or real_root.startswith(real.rstrip(os.sep) + os.sep)


def _class_images(root: Path, folder: Path) -> list[tuple[str, str]]:
    """``(path, real path)`` of the image files under ``folder`` in torchvision's order, each folder walked once.

    A link below ``folder`` to the image folder or a folder above it is refused before it is entered: followed,
    it would file every image of every class (or of the whole disk) under this one.
    """
    real_root, real = os.path.realpath(root), os.path.realpath(folder)
    if _holds(real, real_root):
        raise DataError(
            f"{folder} is linked to {real}, which holds the image folder itself",
            hint="link a class folder only to a folder of that class's images",
        )
    seen_dirs: set[str] = set()
    reals = {os.fspath(folder): real}  # each folder's real path, found once by the folder above it
    found: list[tuple[str, str, list[str]]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = reals[dirpath]
        if here in seen_dirs:  # a second link to a folder already walked (a sibling's)
            dirnames[:] = []
            continue
        seen_dirs.add(here)
        found.append((dirpath, here, filenames))
        keep = []
        for name in sorted(dirnames):  # sorted: which of two links to one folder is walked does not vary
            sub = os.path.join(dirpath, name)
            reals[sub] = os.path.realpath(sub)
            if _holds(reals[sub], real_root):
                what = "the image folder itself" if reals[sub] == real_root else "a folder above the image folder"
                raise DataError(
                    f"{sub} in class folder {folder} is linked to {reals[sub]}, {what} ({root})",
                    hint="link inside a class folder only to folders of that class's images, never to the image "
                    "folder or a folder above it",
                )
            if reals[sub] not in seen_dirs:  # else a loop: a link back to a folder on the way down
                keep.append(name)
        dirnames[:] = keep
    out = []
    for dirpath, here, filenames in sorted(found):  # torchvision sorts the walk the same way
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.lower().endswith(IMG_EXTENSIONS) and os.path.isfile(path):
                # Only a file that is itself a link needs resolving: the folder's real path is known.
                out.append((path, os.path.realpath(path) if os.path.islink(path) else os.path.join(here, name)))
    return out


def _classes_without_readable_images(
    samples: Sequence[tuple[str, int]], names: Sequence[str], index: dict[str, int], workers: int = 4
) -> dict[str, list[tuple[str, str]]]:
    """The class folders among ``names`` none of whose ``samples`` is readable, with their ``(path, reason)``s;
    a sound class costs one check (its files are checked up to the first readable one)."""
    by_label: dict[int, list[str]] = {}
    for path, label in samples:
        by_label.setdefault(label, []).append(path)

    def unreadable(paths: list[str]) -> list[tuple[str, str]] | None:
        bad = []
        for path in paths:
            reason = _check_image(path)
            if reason is None:
                return None
            bad.append((path, reason))
        return bad

    held = [name for name in names if index[name] in by_label]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(unreadable, [by_label[index[name]] for name in held]))
    return {name: bad for name, bad in zip(held, results, strict=True) if bad is not None}


def _check_image(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # structure and checksums, without decoding
        with Image.open(path) as im:
            im.draft(im.mode, (64, 64))  # JPEG decodes at reduced scale: fast, still reads the whole stream
            im.load()
            # What reading it will do to a 16-bit or float image: NaN or infinite pixels fail here, so the
            # file is a bad image now rather than a read error in the middle of a run.
            to_8_bit(im)
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def report_unreadable(bad: Sequence[tuple[str, str]], strict: bool) -> None:
    """``(path, reason)`` of unreadable images: with ``strict`` a DataError listing them, else a warning."""
    if not bad:
        return
    listing = "\n".join(f"  {p}: {r}" for p, r in bad)
    if strict:
        raise DataError(f"{len(bad)} unreadable image(s):\n{listing}", hint=SKIP_HINT)
    print(f"warning: skipping {len(bad)} unreadable image(s):\n{listing}", file=sys.stderr)


def verify_images(
    samples: Sequence[tuple[str, int]], strict: bool = False, workers: int = 4
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Decode every image once: the readable samples and ``(path, reason)`` of the others, which are left out
    (or with ``strict`` a DataError), so a corrupt file is never found deep inside a loader worker."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(_check_image, [p for p, _ in samples]))
    bad = [(p, r) for (p, _), r in zip(samples, reasons, strict=True) if r is not None]
    report_unreadable(bad, strict)
    return [s for s, r in zip(samples, reasons, strict=True) if r is None], bad


class ImageFolderDataset(Dataset):
    """``(path, label)`` samples read with PIL as RGB and passed through ``transform``.

    A file that breaks after :func:`verify_images` is a DataError naming it: reading a neighbour instead would
    train on, or count, another image under this label.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], classes: Sequence[str], transform: Callable | None = None):
        if not samples:
            raise DataError("an image folder dataset needs at least one image")
        self.samples = list(samples)
        self.targets = [t for _, t in self.samples]
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        path, target = self.samples[index]
        try:
            with Image.open(path) as im:
                img = to_rgb(im)
        except Exception as e:  # PIL raises many kinds for a damaged file
            raise DataError(
                f"{path} cannot be read any more ({type(e).__name__}: {e}); it was readable when the folder was "
                "scanned, so it changed or the disk failed",
                hint="restore or remove the file and run again (a training run continues with --resume)",
            ) from None
        return (self.transform(img) if self.transform else img), target


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded per-class split of positions ``0..len(labels)-1`` into sorted (train, held-out) lists: about
    ``fraction`` of each class, at least one image of every class that has two or more."""
    if not (is_number(fraction) and 0 < fraction < 1):
        raise Invalid("--val-split", fraction, "must be the held-out fraction of the training images, in (0, 1)")
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    g = torch.Generator().manual_seed(seed)
    held: set[int] = set()
    for label in sorted(by_class):
        idx = by_class[label]
        k = min(max(round(len(idx) * fraction), 1 if len(idx) > 1 else 0), len(idx) - 1)
        held.update(idx[p] for p in torch.randperm(len(idx), generator=g)[:k].tolist())
    return [i for i in range(len(labels)) if i not in held], sorted(held)
