"""Files zoo writes: atomically (a temporary file beside the target, synced, renamed over it, the folder synced;
a link at the target is replaced, never written through), and only where the rules for user-named files and
folders allow. A killed writer's temporary file (``.NAME.PID.THREAD.tmp|part``) is cleared by a later one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from zoo.errors import OutputFolderError

_UMASK_LOCK = threading.Lock()
# What temp_path_for names: ".<target>.<pid>.<thread>.<suffix>".
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.(?P<thread>\d+)\.(?:tmp|part)$")


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


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it: keep other threads of zoo out meanwhile
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str = ".tmp", name: Callable[[], str] | None = None
) -> Iterator[Path]:
    """A new, empty temporary file beside ``path``, synced and renamed to ``path`` when the block succeeds (a link
    there is replaced, never written through; ``name()``, if given, names the file after the block: a file named by
    its content), with the mode the umask gives; removed, ``path`` untouched, when the block raises."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target, suffix)
    tmp.unlink(missing_ok=True)  # a dead process's file under this pid: removed as an entry, not followed
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666))
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | _NOFOLLOW)
        try:
            # Libraries that fill the file may create it 0600 (safetensors does): give it an ordinary file's mode.
            os.fchmod(fd, 0o666 & ~current_umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target.with_name(name()) if name else target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, run by someone else
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike[str], names: tuple[str, ...] | None = None) -> list[Path]:
    """Remove, as entries (a link is never followed), the temporary files and folders (an extraction's) named by
    :func:`temp_path_for` in ``folder`` (for targets in ``names``, if given) whose process is gone; returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match or (names is not None and match["target"] not in names):
            continue
        if pid_alive(int(match["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


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


def check_output_folder(folder: str | os.PathLike[str], option: str, kind: str, ours: Callable[[Path], bool]) -> None:
    """The one rule for the folders zoo writes (and, with ``--force``, replaces): ``folder`` must be new, empty, or one
    of zoo's own ``kind`` folders that ``ours`` knows by its content; anything else is an :class:`OutputFolderError`
    naming what is there, before anything is written."""
    path = Path(folder)
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputFolderError(f"{option} {folder} is a file, not a folder", hint=f"give a folder for the {kind}")
    entries = sorted(os.listdir(path))
    if not entries or ours(path):
        return
    shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
    raise OutputFolderError(
        f"{option} {folder} holds files that zoo did not write ({shown}): zoo writes only into a new or empty "
        f"folder, or into a {kind} of its own",
        hint=f"give a new folder for the {kind}",
    )


def check_output_file(
    path: str | os.PathLike[str], option: str, ours: Callable[[Path], bool] | None = None, force: bool = False
) -> Path:
    """The one rule for a file a user names for zoo to write (and every file zoo writes beside it): it must be new,
    or a regular file that zoo wrote (``ours`` knows it by its content), or with ``force`` any regular file. Never
    a link (replacing it would surprise whoever made it), a folder, a device or a FIFO (``/dev/null`` as root).
    Checked before anything is computed; the write itself then replaces the entry (:func:`atomic_path`)."""
    target = Path(path)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        kind = "a link" if target.is_symlink() else "a folder" if target.is_dir() else "not a regular file"
        raise OutputFolderError(f"{option} {target} is {kind}", hint="give the path of a new file")
    if target.exists() and not force and not (ours is not None and ours(target)):
        raise OutputFolderError(
            f"{option} {target} is a file zoo did not write: zoo replaces only its own files",
            hint="give a new file name, or pass --force to replace it",
        )
    return target


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_json(text: str | bytes) -> Any:
    """``json.loads``, with JSON nested too deep for Python's recursion limit a ValueError like any other bad JSON
    (a hostile file's ``[[[[...`` must not escape as a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply to be read") from None
