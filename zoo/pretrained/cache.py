"""zoo's cache (``ZOO_CACHE_DIR``, default ``~/.cache/zoo``): ``files/<sha256>`` (every file zoo fetches or converts),
``pins/`` (the one trust store for third-party files: what this machine verified on the first download),
``verified/`` (markers sparing a full hash until a file changes) and ``locks/``. huggingface_hub's and
torchvision's caches are read, never written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError
from zoo.pretrained.manifest import check_name
from zoo.utils import env_flag
from zoo.utils.checks import is_hex, is_int
from zoo.utils.files import parse_json, sha256_file, write_text_atomic

CHUNK = 1 << 20


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``ZOO_OFFLINE`` is set to 1/true/yes/on."""
    return env_flag("HF_HUB_OFFLINE", "ZOO_OFFLINE")


def cache_dir() -> Path:
    """``ZOO_CACHE_DIR``, default ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo").expanduser()


def file_path(sha256: str, suffix: str = ".safetensors") -> Path:
    """Where the file of SHA-256 ``sha256`` is kept."""
    return cache_dir() / "files" / f"{sha256}{suffix}"


def converted_path(name: str) -> Path:
    """Where ``zoo convert`` puts a locally converted file for ``arch.tag`` (used before any source)."""
    return cache_dir() / "converted" / f"{check_name(name)}.safetensors"


def _marker(path: Path) -> Path:
    return cache_dir() / "verified" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")


def _stamp(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def marked(path: Path) -> dict[str, Any]:
    """What the marker of ``path`` records (``sha256``, ``finite``), if the file has not changed since."""
    try:
        record = parse_json(_marker(path).read_text(encoding="utf-8"))
        stamp = _stamp(path.stat())
    except (OSError, ValueError):
        return {}
    ok = isinstance(record, dict) and {k: record.get(k) for k in stamp} == stamp
    return record if ok else {}


def mark(path: Path, **facts: Any) -> None:
    """Record ``facts`` of ``path`` as it is now: its ``sha256``, ``finite=True`` (every float tensor is finite)."""
    with contextlib.suppress(OSError):  # a read-only cache still loads, it only verifies again next time
        write_text_atomic(_marker(path), json.dumps({**marked(path), **facts, **_stamp(path.stat())}))


def check_file(path: Path, sha256: str, size: int | None = None) -> str | None:
    """None when ``path`` has the expected size and SHA-256 (the full hash is paid once, until the file changes),
    else a sentence saying how it differs."""
    try:
        actual_size = path.stat().st_size
        if size is not None and actual_size != size:
            return f"has {actual_size:,} bytes instead of {size:,} (truncated or replaced)"
        if marked(path).get("sha256") == sha256:
            return None
        actual = sha256_file(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if actual != sha256:
        return f"has SHA-256 {actual} instead of {sha256} (corrupted or replaced)"
    mark(path, sha256=sha256)
    return None


def cache_error(error: OSError, doing: str) -> WeightsError:
    """A full or read-only zoo cache, said as such."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return WeightsError(
        f"the zoo cache {cache_dir()} is {'full' if full else 'not writable'}: {doing} failed ({error.strerror})",
        hint="free some space there, or set ZOO_CACHE_DIR to a disk with room"
        if full
        else "set ZOO_CACHE_DIR to a writable folder, or run `zoo download NAME` where it is writable and copy it",
    )


@contextlib.contextmanager
def entry_lock(name: str) -> Iterator[None]:
    """The lock of the weights ``name``, held inside the block: one process fetches a file at a time."""
    from filelock import FileLock

    path = cache_dir() / "locks" / f"{name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        lock.acquire()
    except OSError as e:
        raise cache_error(e, f"creating the lock {path}") from None
    try:
        yield
    finally:
        lock.release()


def _pin_path(name: str) -> Path:
    return cache_dir() / "pins" / f"{name}.json"


def _pins(name: str) -> dict[str, Any]:
    try:
        data = parse_json(_pin_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_pin(name: str, key: str) -> dict[str, Any] | None:
    """What this machine verified of the file ``key`` (``hub:REPO/FILE``, ``url:URL`` or ``converted``) of ``name``;
    a record that is not well formed counts as none (the file is verified against upstream again)."""
    record = _pins(name).get(key)
    if not isinstance(record, dict) or not is_hex(record.get("sha256"), 64) or not is_int(record.get("size")):
        return None
    if key.startswith("hub:") and not is_hex(record.get("commit"), 40):
        return None
    if key.startswith("url:") and not is_hex(record.get("converted_sha256"), 64):
        return None
    return record


def write_pin(name: str, key: str, record: dict[str, Any] | None) -> None:
    """Record (``None``: forget) what was verified of ``key``, under a lock of its own: two processes recording
    two files of one name keep both."""
    from filelock import FileLock

    path = _pin_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        pins = _pins(name)
        if record is None:
            pins.pop(key, None)
        else:
            pins[key] = record
        write_text_atomic(path, json.dumps(pins, indent=1, sort_keys=True) + "\n")


def remove_pins(name: str) -> bool:
    """Forget what this machine pinned of upstream's files for ``name`` (``zoo download --unpin``); True if any."""
    keys = [k for k in _pins(name) if k != "converted"]  # a local conversion is not upstream's file
    for key in keys:
        write_pin(name, key, None)
    return bool(keys)


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder, found as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_cached_file(repo_id: str, filename: str, revision: str) -> Path | None:
    """The file huggingface_hub cached for ``repo_id``/``filename`` at ``revision`` (a branch or a commit), read
    from its documented layout (``refs/<branch>`` holds a commit, ``snapshots/<commit>/<file>`` the file) without
    importing it, which costs more than loading a small model."""
    folder = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    commit = revision
    if not is_hex(revision, 40):
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    if not is_hex(commit, 40):
        return None
    path = folder / "snapshots" / commit / filename
    return path if path.is_file() else None


def torchvision_cache_file(url: str) -> Path | None:
    """The file torchvision itself downloaded for ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``), if any."""
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / url.split("?")[0].rsplit("/", 1)[-1]
    return path if path.is_file() else None
