"""Image folders: one sub-folder per class, scanned, verified once, split and read with PIL; small images of one
size decoded once into a uint8 tensor in ``data_cache_dir()/image-cache`` and memory-mapped from there."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.archive import data_cache_dir
from zoo.data.transforms import ImageTooLarge, check_image_size, to_8_bit
from zoo.errors import DataError
from zoo.utils.checks import Invalid, is_number, json_object, read_bounded
from zoo.utils.files import atomic_path, parse_json, remove_stale_temp_files, write_json

# torchvision's IMG_EXTENSIONS (a test checks they agree), here so that importing zoo.data does not import it.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

MAX_SIDE = 64  # the largest images the cache holds; larger ones stream through DataLoader workers
_VERSION = 1
_META_LIMIT = 64 << 20  # the cache's meta JSON lists skipped files: generous, but never a whole disk read


def eval_folder(root: str | os.PathLike) -> Path | None:
    """``root/val``, ``root/validation`` or ``root/test``, the first that exists, when ``root/train`` exists."""
    root = Path(root)
    if not (root / "train").is_dir():
        return None
    return next((root / d for d in ("val", "validation", "test") if (root / d).is_dir()), None)


def class_folders(root: Path) -> list[str]:
    """The sorted class sub-folders of ``root`` (links to folders too, hidden ones left out); none if not a folder."""
    if not root.is_dir():
        return []
    return sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))


def scan_image_folder(
    root: str | os.PathLike, classes: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes and ``(path, label)`` samples of a one-folder-per-class tree as torchvision's ``ImageFolder`` lists
    them, each real file once (``classes``: ``train/``'s, for ``val/``); every class needs a readable image."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    found = class_folders(root)
    if not found:
        raise FileNotFoundError(f"image folder {root} has no class sub-folders; expected {root}/<class>/<image>.png")
    training = classes is None
    classes = found if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has class folders {unknown} that the training set does not have")
    index = {c: i for i, c in enumerate(classes)}
    listed = [(path, real, index[name]) for name in found for path, real in _class_images(root, root / name)]
    # One sample per real file: where links give a file several names, a name that is not a link is kept.
    keep: dict[str, str] = {}
    for path, real, _ in sorted(listed, key=lambda item: os.path.islink(item[0])):  # stable: listed order otherwise
        keep.setdefault(real, path)
    by_class: dict[str, list[str]] = {name: [] for name in found}
    samples = [(path, label) for path, real, label in listed if keep[real] == path]
    for path, label in samples:
        by_class[classes[label]].append(path)
    if not samples:
        raise FileNotFoundError(f"image folder {root} has no images ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    # In val/ or test/ an empty class folder is one whose images went missing: the other classes alone are scored.
    why = "a class without images cannot be learned" if training else "its images are missing from this tree"
    empty = [name for name, paths in by_class.items() if not paths]
    if empty:
        raise DataError(
            f"image folder {root}: class folder(s) {', '.join(empty)} hold no images",
            hint=f"add images to them or remove them: {why}",
        )
    # A class whose every file is unreadable is empty once --skip-bad-images leaves them out (and without it,
    # skipping would not help): found here, before any file is skipped, by one readable image per class.
    with ThreadPoolExecutor(4) as pool:
        checked = dict(zip(by_class, pool.map(_unreadable, by_class.values()), strict=True))
    unreadable = {name: bad for name, bad in checked.items() if bad}
    if unreadable:
        # One line: each class with its count and the first file's reason (they are usually all alike).
        listing = "; ".join(f"{n}: {len(bad)} file(s), e.g. {bad[0][0]}: {bad[0][1]}" for n, bad in unreadable.items())
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


def _refuse_link_up(path: str, real: str, real_root: str) -> None:
    """Refuse a link to the image folder or above: followed, it would file every image (or disk) under one class."""
    if real == real_root or real_root.startswith(real.rstrip(os.sep) + os.sep):
        what = "the image folder itself" if real == real_root else "a folder above the image folder"
        raise DataError(
            f"{path} is linked to {real}, {what} ({real_root})",
            hint="link a class folder, or a folder inside it, only to folders of that class's images",
        )


def _class_images(root: Path, folder: Path) -> list[tuple[str, str]]:
    """``(path, real path)`` of the image files under ``folder`` in torchvision's order, each folder walked once."""
    real_root = os.path.realpath(root)
    reals = {os.fspath(folder): os.path.realpath(folder)}  # each folder's real path, found by the folder above it
    _refuse_link_up(os.fspath(folder), reals[os.fspath(folder)], real_root)
    seen_dirs: set[str] = set()
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
            _refuse_link_up(sub, reals[sub], real_root)
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


def _unreadable(paths: list[str]) -> list[tuple[str, str]]:
    """``(path, reason)`` of each of ``paths`` when none is readable (checked up to the first readable one)."""
    bad = []
    for path in paths:
        reason = _check_image(path)
        if reason is None:
            return []
        bad.append((path, reason))
    return bad


def _check_image(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            check_image_size(im)
            im.verify()  # structure and checksums, without decoding
        with Image.open(path) as im:
            im.draft(im.mode, (64, 64))  # JPEG decodes at reduced scale: fast, still reads the whole stream
            im.load()
            # NaN or infinite pixels of a float image fail here, not in the middle of a run.
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
        hint = "remove or replace them, or leave them out: zoo train/eval --skip-bad-images (strict_images=False)"
        raise DataError(f"{len(bad)} unreadable image(s):\n{listing}", hint=hint)
    print(f"warning: skipping {len(bad)} unreadable image(s):\n{listing}", file=sys.stderr)


def verify_images(
    samples: Sequence[tuple[str, int]], strict: bool = False, workers: int = 4
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Decode every image once, before a loader worker meets one: the readable samples, ``(path, reason)`` of others."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(_check_image, [p for p, _ in samples]))
    bad = [(p, r) for (p, _), r in zip(samples, reasons, strict=True) if r is not None]
    report_unreadable(bad, strict)
    return [s for s, r in zip(samples, reasons, strict=True) if r is None], bad


class ImageFolderDataset(Dataset):
    """``(path, label)`` samples read with PIL as RGB and passed through ``transform``; a file that breaks after
    :func:`verify_images` is a DataError naming it (a neighbour read instead would train on a wrong label)."""

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
                img = to_8_bit(check_image_size(im, self.transform, path)).convert("RGB")  # as torchvision reads it
        except ImageTooLarge:  # for the transform's resize: the file itself is as it was
            raise
        except Exception as e:  # PIL raises many kinds for a damaged file
            raise DataError(
                f"{path} cannot be read any more ({type(e).__name__}: {e}); it was readable when the folder was "
                "scanned, so it changed or the disk failed",
                hint="restore or remove the file and run again (a training run continues with --resume)",
            ) from None
        return (self.transform(img) if self.transform else img), target


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of positions into sorted (train, held-out) lists: ``fraction`` of each class of two or more."""
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


@dataclass
class CachedImages:
    """The decoded images of the readable ``samples`` (in order), and what was left out."""

    images: torch.Tensor  # uint8 (N, 3, H, W), memory-mapped when ``path`` is set
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    path: Path | None = None  # the .npy file, or None when the images are held in memory only


def _decode(samples: Sequence[tuple[str, int]], size: tuple[int, int]) -> tuple[np.ndarray, list, str | None]:
    """The readable images of ``samples``, ``(path, reason)`` of the others, and why not when one is not ``size``."""
    from PIL import Image

    h, w = size
    out = np.empty((len(samples), 3, h, w), dtype=np.uint8)
    bad: list[tuple[str, str]] = []
    n = 0
    for path, _ in samples:
        try:
            with Image.open(path) as im:  # an image of another size is never decoded: its header says its size
                found = im.size
                arr = np.asarray(to_8_bit(im).convert("RGB")) if found == (w, h) else None  # as ImageFolderDataset
        except Exception as e:  # PIL raises many types for bad files
            bad.append((path, f"{type(e).__name__}: {e}"))
            continue
        if arr is None:
            return out[:n], bad, f"{path} is {found[0]}x{found[1]}, not {w}x{h}"
        out[n] = arr.transpose(2, 0, 1)
        n += 1
    return out[:n], bad, None


def _load(npy: Path, meta: Path, key: str, samples: Sequence[tuple[str, int]]) -> CachedImages | None:
    try:
        info = json_object("image cache", parse_json(read_bounded(meta, _META_LIMIT, str(meta))))
        if info.get("key") != key or not npy.is_file():
            return None
        skipped = [(str(p), str(r)) for p, r in info.get("skipped", [])]
        bad = {p for p, _ in skipped}
        kept = [s for s in samples if s[0] not in bad]
        arr = np.load(npy, mmap_mode="c")  # copy-on-write: writable for torch, the file is never changed
    except (OSError, TypeError, ValueError):  # a damaged cache is rebuilt
        return None
    if arr.dtype != np.uint8 or arr.ndim != 4 or len(arr) != len(kept):
        return None
    return CachedImages(torch.from_numpy(arr), kept, skipped, npy)  # type: ignore[arg-type]


def cached_images(
    samples: Sequence[tuple[str, int]],
    size: tuple[int, int],
    *,
    strict: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    write: bool = True,
    required: str | os.PathLike[str] | None = None,
) -> CachedImages | None:
    """The readable images of ``samples`` as one uint8 tensor of ``size`` (height, width), cached (in memory only
    without ``write``); an image of another size gives None, or a DataError if the folder ``required`` (CIFAR)."""
    folder = Path(cache_dir) if cache_dir is not None else data_cache_dir() / "image-cache"
    # The key: every file's path, label, size, and times (the change time catches a write that set the mtime back).
    h = hashlib.sha256(json.dumps({"version": _VERSION, "size": list(size)}).encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    key = h.hexdigest()
    root = os.path.commonpath([os.path.abspath(p) for p, _ in samples]) if samples else ""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(root).name)[:40] or "images"
    stem = f"{name}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"
    npy = folder / f"{stem}-{key[:16]}.npy"
    meta = npy.with_suffix(".json")
    found = _load(npy, meta, key, samples) if meta.is_file() else None
    if found is not None:
        report_unreadable(found.skipped, strict)
        return found
    arr, bad, other = _decode(samples, size)
    if other is not None:
        if required is not None:
            raise DataError(other, hint=f"use --dataset imagefolder:{required} for images of other sizes")
        if len(arr):  # images of the size came first: say why the folder is not cached after all
            print(f"note: not caching the images: {other}", file=sys.stderr)
        return None
    report_unreadable(bad, strict)
    bad_paths = {p for p, _ in bad}
    in_memory = CachedImages(torch.from_numpy(arr), [s for s in samples if s[0] not in bad_paths], bad, None)
    if not write:
        return in_memory
    try:
        remove_stale_temp_files(folder)  # what a run killed mid-write left
        with atomic_path(npy) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)
        write_json({"key": key, "shape": list(arr.shape), "skipped": bad, "samples": len(samples)}, meta)
    except OSError as e:
        print(f"note: could not write the image cache in {folder} ({e}); keeping them in memory", file=sys.stderr)
        return in_memory
    for old in folder.glob(f"{stem}-*"):  # caches of earlier versions of this folder
        if old not in (npy, meta) and not old.name.startswith("."):
            old.unlink(missing_ok=True)
    return _load(npy, meta, key, samples) or in_memory
