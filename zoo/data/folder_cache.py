"""Small-image folders decoded once into a uint8 tensor, kept on disk and memory-mapped.

A folder whose images are at most 64x64 and the model's input size, and whose pixels fit ``ZOO_IMAGE_CACHE_MB``
(default 4096; 0 turns the cache off), is decoded once into ``data_cache_dir()/image-cache``, keyed by its files'
names, labels, sizes and times, and written atomically; later runs map it into memory without decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from zoo.data.archive import data_cache_dir
from zoo.data.folder import report_unreadable
from zoo.data.transforms import to_rgb
from zoo.errors import DataError
from zoo.utils.checks import json_object, number_in, read_bounded
from zoo.utils.files import atomic_path, parse_json, write_json

MAX_SIDE = 64  # larger images stream through DataLoader workers instead
_VERSION = 1
_META_LIMIT = 64 << 20  # the meta JSON lists skipped files: generous, but never a whole disk read


@dataclass
class CachedImages:
    """The decoded images of the readable ``samples`` (in order), and what was left out."""

    images: torch.Tensor  # uint8 (N, 3, H, W), memory-mapped when ``path`` is set
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    path: Path | None = None  # the .npy file, or None when the images are held in memory only


def cache_budget() -> int:
    """The largest cache in bytes: ``ZOO_IMAGE_CACHE_MB`` megabytes (default 4096; 0 turns caching off)."""
    text = os.environ.get("ZOO_IMAGE_CACHE_MB", "").strip() or "4096"
    try:
        mb: object = float(text)
    except ValueError:
        mb = text
    return int(number_in("ZOO_IMAGE_CACHE_MB", mb, 0) * 2**20)


def cache_key(samples: Sequence[tuple[str, int]], size: tuple[int, int]) -> str:
    """SHA-256 over the image size and every sample's path, label, file size, modification and change time."""
    # The change time catches an edit that kept the size and set the mtime back: any write changes it.
    h = hashlib.sha256(json.dumps({"version": _VERSION, "size": list(size)}).encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()


class _OtherSize(Exception):
    """An image of another size (and how many before it had the size): the folder is not cached."""


def _decode(samples: Sequence[tuple[str, int]], size: tuple[int, int]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    from PIL import Image

    h, w = size
    out = np.empty((len(samples), 3, h, w), dtype=np.uint8)
    bad: list[tuple[str, str]] = []
    n = 0
    for path, _ in samples:
        try:
            with Image.open(path) as im:
                arr = np.asarray(to_rgb(im))  # as ImageFolderDataset reads it
        except Exception as e:  # PIL raises many types for bad files
            bad.append((path, f"{type(e).__name__}: {e}"))
            continue
        if arr.shape[:2] != (h, w):
            raise _OtherSize(f"{path} is {arr.shape[1]}x{arr.shape[0]}, not {w}x{h}", n)
        out[n] = arr.transpose(2, 0, 1)
        n += 1
    return out[:n], bad


def _paths(samples: Sequence[tuple[str, int]], key: str, cache_dir: Path) -> tuple[Path, Path, str]:
    root = os.path.commonpath([os.path.abspath(p) for p, _ in samples]) if samples else ""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(root).name)[:40] or "images"
    stem = f"{name}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"
    npy = cache_dir / f"{stem}-{key[:16]}.npy"
    return npy, npy.with_suffix(".json"), stem


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
    """The readable images of ``samples`` as one uint8 tensor of ``size`` (height, width), from the cache or decoded
    and cached now (in memory only with ``write`` False). An image of another size gives None, or a DataError
    where the data set in the folder ``required`` must have that size (CIFAR)."""
    folder = Path(cache_dir) if cache_dir is not None else data_cache_dir() / "image-cache"
    key = cache_key(samples, size)
    npy, meta, stem = _paths(samples, key, folder)
    found = _load(npy, meta, key, samples) if meta.is_file() else None
    if found is not None:
        report_unreadable(found.skipped, strict)
        return found
    try:
        arr, bad = _decode(samples, size)
    except _OtherSize as e:
        if required is not None:
            raise DataError(e.args[0], hint=f"use --dataset imagefolder:{required} for images of other sizes") from None
        if e.args[1]:  # images of the size came first: say why the folder is not cached after all
            print(f"note: not caching the images: {e.args[0]}", file=sys.stderr)
        return None
    report_unreadable(bad, strict)
    bad_paths = {p for p, _ in bad}
    kept = [s for s in samples if s[0] not in bad_paths]
    if not write:
        return CachedImages(torch.from_numpy(arr), kept, bad, None)
    try:
        with atomic_path(npy) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)
        write_json({"key": key, "shape": list(arr.shape), "skipped": bad, "samples": len(samples)}, meta)
    except OSError as e:
        print(f"note: could not write the image cache in {folder} ({e}); keeping them in memory", file=sys.stderr)
        return CachedImages(torch.from_numpy(arr), kept, bad, None)
    for old in folder.glob(f"{stem}-*"):  # caches of earlier versions of this folder
        if old not in (npy, meta) and not old.name.startswith("."):
            old.unlink(missing_ok=True)
    del arr
    loaded = _load(npy, meta, key, samples)
    assert loaded is not None, f"the image cache {npy} just written does not read back"
    return loaded
