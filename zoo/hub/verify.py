"""Verifying files once: SHA-256 checks remembered in ``ZOO_CACHE_DIR/verified`` markers.

A full hash of a large file is paid once: a marker records the size, mtime, ctime and inode the file was
verified at, and any write to the file changes those (ctime cannot be set from user space, so an edit that
restores the mtime still shows). The same marker remembers that a file's tensors were found finite, so
that the NaN/Inf check of :mod:`zoo.hub.load` is paid once per file too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from zoo.utils import env_flag
from zoo.utils.files import parse_json, write_text_atomic

__all__ = [
    "CHUNK", "cache_dir", "check_file", "has_valid_marker", "is_offline", "mark_finite", "mark_verified",
    "marked_finite", "sha256_file",
]  # fmt: skip

CHUNK = 1 << 20


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``ZOO_OFFLINE`` is set to 1/true/yes/on."""
    return env_flag("HF_HUB_OFFLINE", "ZOO_OFFLINE")


def cache_dir() -> Path:
    """zoo's cache: ``ZOO_CACHE_DIR``, default ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo").expanduser()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / "verified" / f"{key}.json"


def _stamp(st: os.stat_result) -> dict[str, Any]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _current_marker(path: Path) -> dict[str, Any] | None:
    """The marker of ``path`` if the file has not changed since it was written, else None."""
    try:
        st = path.stat()
        recorded = parse_json(_marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or {k: recorded.get(k) for k in _stamp(st)} != _stamp(st):
        return None
    return recorded


def _write_marker(path: Path, **facts: Any) -> None:
    # Best effort: a read-only cache still loads, it only verifies again next time.
    with contextlib.suppress(OSError):
        write_text_atomic(_marker_path(path), json.dumps({**_stamp(path.stat()), **facts}))


def has_valid_marker(path: Path, sha256: str) -> bool:
    """True when ``path`` was verified against ``sha256`` and has not changed since."""
    marker = _current_marker(path)
    return marker is not None and marker.get("sha256") == sha256


def mark_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` (as it is now) has SHA-256 ``sha256``; best effort on a read-only cache."""
    marker = _current_marker(path) or {}
    finite = {"finite": True} if marker.get("finite") is True else {}
    _write_marker(path, sha256=sha256, **finite)


def marked_finite(path: Path) -> bool:
    """True when every floating-point tensor of ``path`` was found finite and the file has not changed since."""
    marker = _current_marker(path)
    return marker is not None and marker.get("finite") is True


def mark_finite(path: Path) -> None:
    """Record that the tensors of ``path`` (as it is now) are all finite; keeps a SHA-256 already recorded."""
    marker = _current_marker(path) or {}
    sha = {"sha256": marker["sha256"]} if marker.get("sha256") else {}
    _write_marker(path, finite=True, **sha)


def check_file(path: Path, sha256: str, size: int | None) -> str | None:
    """None when ``path`` has the expected size and SHA-256, else a sentence saying how it differs.

    The full hash is paid once: a valid marker stands for it until the file changes.
    """
    try:
        actual_size = path.stat().st_size
    except OSError as e:
        return f"cannot be read ({e})"
    if size is not None and actual_size != size:
        return f"has {actual_size:,} bytes instead of {size:,} (truncated or replaced)"
    if has_valid_marker(path, sha256):
        return None
    try:
        actual = sha256_file(path)
    except OSError as e:
        return f"cannot be read ({e})"
    if actual != sha256:
        return f"has SHA-256 {actual} instead of {sha256} (corrupted or replaced)"
    mark_verified(path, sha256)
    return None
