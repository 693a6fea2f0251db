"""zoo's cache folder (``ZOO_CACHE_DIR``): what this machine has verified, and where files are kept.

* Verified markers (``verified/``): a full SHA-256 of a large file is paid once. A marker records the size,
  mtime, ctime and inode the file was verified at, and any write to the file changes those (ctime cannot be
  set from user space, so an edit that restores the mtime still shows). The same marker remembers that a
  file's tensors were found finite.
* Pins (``pins/<arch.tag>.json``): what this machine verified of a third-party file on its first download:
  the Hub commit, the SHA-256 and size, and for a converted pickle the SHA-256 of the safetensors file made
  from it. A refetch goes to the pinned commit, and a file that differs there is refused.
* huggingface_hub's cache, read without importing huggingface_hub, and bad files removed from it without
  ever following a link out of it: a snapshot entry is unlinked as an entry, and its blob only when that
  blob is in the repo's own ``blobs/`` folder.
* One lock per entry (``locks/``), so that concurrent processes download a file once and write pins in turn.

The trust story these serve is in ``docs/weights.md``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError
from zoo.pretrained import manifest
from zoo.pretrained.manifest import COMMIT_RE, SHA256_RE, Source, WeightsEntry
from zoo.utils import env_flag
from zoo.utils.files import parse_json, write_text_atomic

__all__ = [
    "CHUNK",
    "cache_dir",
    "cache_error",
    "check_file",
    "converted_path",
    "converted_record",
    "drop_hub_file",
    "entry_lock",
    "has_valid_marker",
    "hf_hub_cache",
    "hub_cached_file",
    "is_offline",
    "mark_finite",
    "mark_verified",
    "marked_finite",
    "read_pin",
    "record_converted",
    "remove_pins",
    "repo_folder",
    "sha256_file",
    "torch_cache_path",
    "url_cache_path",
    "write_pin",
]


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


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder, worked out from the environment as huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_folder(source: Source) -> Path:
    """The cache folder of a Hub source's model repo (``models--org--name``)."""
    return hf_hub_cache() / ("models--" + str(source.repo_id).replace("/", "--"))


def _is_commit(revision: str) -> bool:
    return COMMIT_RE.fullmatch(revision) is not None


def hub_cached_file(source: Source) -> Path | None:
    """The file huggingface_hub cached for a (resolved) Hub source, found without importing huggingface_hub.

    This reads huggingface_hub's documented cache layout (``models--org--name/refs/<branch>`` holds a
    commit, ``snapshots/<commit>/<file>`` the file) instead of calling ``try_to_load_from_cache``: importing
    huggingface_hub costs more than loading a small model, and a warm cache must not pay for it.
    tests/test_weights_fetch.py checks that both agree.
    """
    folder = repo_folder(source)
    revision = source.revision or "main"
    commit = revision
    if not _is_commit(revision):
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
        if not _is_commit(commit):  # a refs file that is not a commit hash names no snapshot
            return None
    path = folder / "snapshots" / commit / str(source.filename)
    return path if path.exists() or path.is_symlink() else None


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def drop_hub_file(path: Path, source: Source) -> None:
    """Remove a bad file from the Hub cache: its snapshot entry and, if it is the repo's own, its blob.

    Entries are unlinked, never followed: a link to a file outside the cache loses the link, not the file.
    """
    folder = repo_folder(source)
    if not _inside(path.parent, folder):
        raise WeightsError(
            f"{path} is not where huggingface_hub keeps files: its folder leads out of {folder} (a link?)",
            hint=f"remove {path} yourself after checking what it points to; zoo deletes nothing outside its caches",
        )
    blob = None
    if path.is_symlink():
        target = Path(os.path.normpath(path.parent / os.readlink(path)))
        if os.path.realpath(target.parent) == os.path.realpath(folder / "blobs"):
            blob = target
    path.unlink(missing_ok=True)
    if blob is not None:
        blob.unlink(missing_ok=True)  # if the blob itself is a link, only the link goes


CACHE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def cache_error(error: OSError, doing: str) -> WeightsError:
    """A full or read-only zoo cache, said as such."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return WeightsError(
            f"the zoo cache {cache_dir()} is full: {doing} failed ({error.strerror})",
            hint="free some space there, or set ZOO_CACHE_DIR to a folder on a disk with room",
        )
    return WeightsError(
        f"the zoo cache {cache_dir()} is not writable: {doing} failed ({error.strerror})",
        hint="set ZOO_CACHE_DIR to a writable folder, or run `zoo download NAME` where it is writable and copy it",
    )


def url_cache_path(name: str, entry: WeightsEntry) -> Path:
    """Where the file of a safetensors URL entry is cached."""
    # The SHA prefix keeps a stale file from an older manifest from being mistaken for the new one.
    manifest.check_name(name)
    return cache_dir() / "weights" / f"{name}-{str(entry.sha256)[:12]}.safetensors"


def torch_cache_path(name: str, upstream_sha: str) -> Path:
    """Where the safetensors file converted from a torchvision ``.pth`` of SHA-256 ``upstream_sha`` is kept."""
    return cache_dir() / "weights" / f"{manifest.check_name(name)}-{upstream_sha[:12]}.safetensors"


def converted_path(name: str) -> Path:
    """Where ``zoo convert`` puts a locally converted file for ``arch.tag`` (looked up before the source)."""
    manifest.check_name(name)
    return cache_dir() / "converted" / f"{name}.safetensors"


def _acquire(lock_path: Path):  # noqa: ANN202 - a filelock.FileLock, imported here only
    """The acquired file lock at ``lock_path`` (release it); an OSError if the cache cannot hold one."""
    from filelock import FileLock

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    lock.acquire()
    return lock


def entry_lock(name: str):  # noqa: ANN202 - a filelock.FileLock, imported here only
    """The acquired file lock of the weights ``name`` (release it): one process fetches a file at a time."""
    lock_path = cache_dir() / "locks" / f"{name}.lock"
    try:
        return _acquire(lock_path)
    except OSError as e:
        raise cache_error(e, f"creating the lock {lock_path}") from None


def _source_key(source: Source) -> str:
    # Independent of the revision: a pin made at "main" holds when the source is later asked for again.
    return f"hub:{source.repo_id}/{source.filename}" if source.type == "hub" else f"url:{source.url}"


def _pin_path(name: str) -> Path:
    return cache_dir() / "pins" / f"{manifest.check_name(name)}.json"


def _read_pins(name: str) -> dict[str, Any]:
    try:
        data = parse_json(_pin_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_pins(name: str, pins: dict[str, Any]) -> None:
    write_text_atomic(_pin_path(name), json.dumps(pins, indent=1, sort_keys=True) + "\n")


@contextmanager
def _pins_locked(name: str) -> Iterator[None]:
    """Hold the lock of ``name``'s pin file for a read-modify-write, so that two processes recording pins of
    two sources (or one converting while another downloads) do not lose each other's record. It is a lock of
    its own, not the entry's fetch lock, which the fetch that writes a pin already holds."""
    lock = _acquire(cache_dir() / "locks" / f"{manifest.check_name(name)}.pins.lock")
    try:
        yield
    finally:
        lock.release()


def read_pin(name: str, source: Source) -> dict[str, Any] | None:
    """What this machine verified of ``source`` for ``name``: commit (Hub), sha256, size; None if nothing.

    A record that is not well formed counts as none (the file is verified again against upstream).
    """
    record = _read_pins(name).get(_source_key(source))
    if not isinstance(record, dict) or not SHA256_RE.fullmatch(str(record.get("sha256"))):
        return None
    if source.type == "hub" and not COMMIT_RE.fullmatch(str(record.get("commit"))):
        return None
    if source.format == "torch" and not SHA256_RE.fullmatch(str(record.get("converted_sha256"))):
        return None
    return record


def write_pin(name: str, source: Source, record: dict[str, Any]) -> None:
    """Record what was verified of ``source`` for ``name`` (best effort: a read-only cache only warns)."""
    try:
        with _pins_locked(name):
            pins = _read_pins(name)
            pins[_source_key(source)] = record
            _write_pins(name, pins)
    except OSError as e:  # the file was verified; only the pin for next time is lost
        warnings.warn(f"could not record the pin of {name} in {_pin_path(name)}: {e.strerror}", stacklevel=4)


def record_converted(name: str, sha256: str, size: int) -> None:
    """Remember the SHA-256 of a file ``zoo convert`` made for a third-party entry (its manifest entry
    describes upstream's files, so the local conversion is pinned here instead)."""
    with _pins_locked(name):
        pins = _read_pins(name)
        pins["converted"] = {"sha256": sha256, "size": size}
        _write_pins(name, pins)


def converted_record(name: str) -> tuple[str, int | None] | None:
    """(SHA-256, size) recorded by :func:`record_converted` for ``name``, if any."""
    record = _read_pins(name).get("converted")
    if not isinstance(record, dict) or not SHA256_RE.fullmatch(str(record.get("sha256"))):
        return None
    size = record.get("size")
    return record["sha256"], size if isinstance(size, int) else None


def remove_pins(name: str) -> bool:
    """Forget what this machine pinned for ``name`` (``zoo download --unpin``); True if there was a pin."""
    with _pins_locked(name):
        pins = _read_pins(name)
        kept = {k: v for k, v in pins.items() if k == "converted"}  # a local conversion is not upstream's file
        if len(kept) == len(pins):
            return False
        if kept:
            _write_pins(name, kept)
        else:
            _pin_path(name).unlink(missing_ok=True)
        return True
