"""Small-image folders decoded once into a uint8 tensor, kept on disk and memory-mapped.

Reading 32x32 JPEGs one at a time through PIL and per-sample transforms costs far more than training a small
model on them. A folder whose images are small (at most 64x64) and exactly the model's input size, and
whose pixels fit ``ZOO_IMAGE_CACHE_MB`` (default 4096; 0 turns the cache off), is decoded once into an
``(N, 3, H, W)`` uint8 array in ``data_cache_dir()/image-cache``. Later runs map that file into memory
(``numpy.load(mmap_mode="c")``): no decoding, and the pages are shared between processes.

The cache is keyed by the list of files, their labels, sizes and modification times: adding, removing,
renaming or touching any image writes a new cache (and removes the old one). It is written atomically, so a
run that is stopped half way leaves no broken cache behind. Unreadable images are left out, and reported,
as :func:`zoo.data.folder.verify_images` does.
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
from zoo.data.folder import SKIP_HINT
from zoo.data.transforms import to_rgb
from zoo.errors import ArgumentValueError, DataError
from zoo.utils.files import atomic_path, parse_json, write_json

__all__ = ["MAX_SIDE", "CachedImages", "cache_budget", "cache_key", "cached_images", "image_size"]

MAX_SIDE = 64  # larger images stream through DataLoader workers instead
_DEFAULT_BUDGET_MB = 4096
_VERSION = 1


@dataclass
class CachedImages:
    """The decoded images of the readable ``samples`` (in order), and what was left out."""

    images: torch.Tensor  # uint8 (N, 3, H, W), memory-mapped when ``path`` is set
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    path: Path | None = None  # the .npy file, or None when the cache folder could not be written


def cache_budget() -> int:
    """The largest cache in bytes: ``ZOO_IMAGE_CACHE_MB`` megabytes (default 4096; 0 turns caching off)."""
    text = os.environ.get("ZOO_IMAGE_CACHE_MB", "").strip()
    try:
        mb = float(text) if text else _DEFAULT_BUDGET_MB
    except ValueError:
        raise ArgumentValueError(
            f"ZOO_IMAGE_CACHE_MB={text!r}: give a number of megabytes (0 turns the cache off)"
        ) from None
    return int(mb * 2**20)


def image_size(samples: Sequence[tuple[str, int]], tries: int = 8) -> tuple[int, int] | None:
    """(height, width) of the first readable image among the first ``tries`` (None when none opens)."""
    from PIL import Image

    for path, _ in samples[:tries]:
        try:
            with Image.open(path) as im:
                return im.height, im.width
        except Exception:  # PIL raises many types for bad files; they are reported when decoded
            continue
    return None


def cache_key(samples: Sequence[tuple[str, int]], size: tuple[int, int]) -> str:
    """SHA-256 over the image size and every sample's path, label, file size, modification and change time.

    The change time (ctime) is what catches an edit that kept the size and set the mtime back: any write
    changes it, and user space cannot set it.
    """
    h = hashlib.sha256(json.dumps({"version": _VERSION, "size": list(size)}).encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()


class _OtherSize(Exception):
    """An image of another size: the folder is not cached (it streams through the per-sample path)."""


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
            raise _OtherSize(f"{path} is {arr.shape[1]}x{arr.shape[0]}, not {w}x{h}")
        out[n] = arr.transpose(2, 0, 1)
        n += 1
    return out[:n], bad


def _report(bad: Sequence[tuple[str, str]], strict: bool) -> None:
    if not bad:
        return
    listing = "\n".join(f"  {p}: {r}" for p, r in bad)
    if strict:
        raise DataError(f"{len(bad)} unreadable image(s):\n{listing}", hint=SKIP_HINT)
    print(f"warning: skipping {len(bad)} unreadable image(s):\n{listing}", file=sys.stderr)


def _paths(samples: Sequence[tuple[str, int]], key: str, cache_dir: Path) -> tuple[Path, Path, str]:
    root = os.path.commonpath([os.path.abspath(p) for p, _ in samples]) if samples else ""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(root).name)[:40] or "images"
    stem = f"{name}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"
    npy = cache_dir / f"{stem}-{key[:16]}.npy"
    return npy, npy.with_suffix(".json"), stem


def _load(npy: Path, meta: Path, key: str, samples: Sequence[tuple[str, int]]) -> CachedImages | None:
    try:
        info = parse_json(meta.read_text())
        if info.get("key") != key or not npy.is_file():
            return None
        skipped = [tuple(x) for x in info.get("skipped", [])]
        bad = {p for p, _ in skipped}
        kept = [s for s in samples if s[0] not in bad]
        arr = np.load(npy, mmap_mode="c")  # copy-on-write: writable for torch, the file is never changed
    except (OSError, ValueError):
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
) -> CachedImages | None:
    """The images of ``samples`` (``(path, label)``) as one uint8 tensor of ``size`` (height, width), from the
    cache when its key still matches, else decoded now and cached.

    Returns None when an image has another size (the folder then streams through per-sample transforms).
    Unreadable images are reported on stderr and left out, or with ``strict`` raise a DataError listing them.
    """
    folder = Path(cache_dir) if cache_dir is not None else data_cache_dir() / "image-cache"
    key = cache_key(samples, size)
    npy, meta, stem = _paths(samples, key, folder)
    found = _load(npy, meta, key, samples) if meta.is_file() else None
    if found is not None:
        _report(found.skipped, strict)
        return found
    try:
        arr, bad = _decode(samples, size)
    except _OtherSize as e:
        print(f"note: not caching the images in memory: {e}", file=sys.stderr)
        return None
    _report(bad, strict)
    bad_paths = {p for p, _ in bad}
    kept = [s for s in samples if s[0] not in bad_paths]
    try:
        with atomic_path(npy) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)
        write_json({"key": key, "shape": list(arr.shape), "skipped": bad, "samples": len(samples)}, meta)
    except OSError as e:
        print(f"note: could not write the image cache in {folder} ({e}); keeping the images in memory", file=sys.stderr)
        return CachedImages(torch.from_numpy(arr), kept, bad, None)
    for old in folder.glob(f"{stem}-*"):  # caches of earlier versions of this folder
        if old not in (npy, meta) and not old.name.startswith("."):
            old.unlink(missing_ok=True)
    del arr
    loaded = _load(npy, meta, key, samples)
    assert loaded is not None, f"the image cache {npy} just written does not read back"
    return loaded
