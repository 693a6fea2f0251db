"""Atomic file writing: a file is either its old self or completely new, never half written.

Checkpoints, weights, the manifest, metrics, plots and downloads are all written this way: to a temporary
file in the same folder, synced to disk, renamed over the target (a rename within a folder is atomic),
then the folder itself is synced so that the rename survives a power cut.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "fsync_dir", "json_default", "write_json", "write_text_atomic"]


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where folders can't be opened."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path_for(target: Path, suffix: str = ".tmp") -> Path:
    """A hidden temporary name beside ``target``, unique to this process and thread."""
    # pid and thread keep concurrent writers of the same target from sharing a temporary file.
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it is synced and renamed to ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for the values runs record: tuples, sets, paths and tensors."""
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=json_default) + "\n")
