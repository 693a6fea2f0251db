"""Getting a manifest entry's file onto this machine, verified: the Hub, an http(s) URL, or the repo.

* Hub files live in huggingface_hub's own cache (``HF_HOME``/``HF_HUB_CACHE``) and are fetched with
  ``hf_hub_download`` (so ``HF_ENDPOINT``, tokens and mirrors work). A warm cache is found by reading the
  cache layout directly, so that loading never pays for importing huggingface_hub.
* URL files are streamed (with a progress bar) to a temporary file next to their place in
  ``ZOO_CACHE_DIR``, hashed on the way, and renamed into place only when size and SHA-256 match.
* Bundled files sit in ``weights/`` beside the manifest.

Every file is checked against the manifest's SHA-256 before use. A full hash of a large file is paid
once: a marker in ``ZOO_CACHE_DIR/verified`` records the size, mtime, ctime and inode it was verified
at, and any write to the file changes those (:mod:`zoo.hub.verify`). A cached file that fails the check
is reported and fetched again; it is never loaded. A file lock per weights makes concurrent fetches
download once.

Names and paths from the manifest are checked where they become paths (:func:`manifest.check_name`,
:func:`manifest.bundled_path`), so an entry cannot make zoo read or write outside its folders, and
nothing is deleted through a link (:func:`zoo.hub.hubcache.drop_hub_file`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import warnings
from pathlib import Path

from zoo.errors import IntegrityError, NotPublishedError, OfflineError, WeightsError
from zoo.hub import manifest
from zoo.hub.entry import Source, WeightsEntry
from zoo.hub.hubcache import drop_hub_file, hf_hub_cache, hub_cached_file, hub_download
from zoo.hub.verify import CHUNK, cache_dir, has_valid_marker, mark_verified, sha256_file
from zoo.utils.files import atomic_path

__all__ = [
    "CHUNK", "cache_dir", "cached_state", "check_file", "converted_path", "fetch", "has_valid_marker",
    "hf_hub_cache", "hub_cached_file", "is_offline", "mark_verified", "not_published_error", "offline_error",
    "sha256_file", "url_cache_path",
]  # fmt: skip

_TRUE = ("1", "true", "yes", "on")


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``ZOO_OFFLINE`` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "ZOO_OFFLINE"))


def converted_path(name: str) -> Path:
    """Where ``zoo convert`` puts a locally converted file for ``arch.tag`` (looked up before the source)."""
    manifest.check_name(name)
    return cache_dir() / "converted" / f"{name}.safetensors"


def url_cache_path(name: str, entry: WeightsEntry) -> Path:
    """Where the file of a URL entry is cached."""
    # The SHA prefix keeps a stale file from an older manifest from being mistaken for the new one.
    manifest.check_name(name)
    return cache_dir() / "weights" / f"{name}-{str(entry.sha256)[:12]}.safetensors"


def check_file(path: Path, sha256: str, size: int | None) -> str | None:
    """None when ``path`` has the expected size and SHA-256, else a sentence saying how it differs."""
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


def _how_to_get_it(name: str) -> str:
    return (
        f"pre-fetch it on a machine with network access with `zoo download {name}` (and copy ZOO_CACHE_DIR and "
        f"HF_HOME over), or load a local safetensors file with create_model(..., checkpoint_path=PATH) or "
        f"zoo.load_weights(model, PATH)"
    )


def offline_error(name: str, entry: WeightsEntry) -> OfflineError:
    """The one error for offline mode: the weights, where they would come from, and what to do."""
    flag = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE else "ZOO_OFFLINE"
    return OfflineError(
        f"{name} is not in the local cache and offline mode is on ({flag}=1); it would come from "
        f"{manifest.describe_source(entry)}",
        hint=_how_to_get_it(name),
    )


def not_published_error(name: str, entry: WeightsEntry) -> NotPublishedError:
    """Explain that an unpublished entry has no file to fetch and how to make one locally."""
    command = (entry.origin or {}).get("command")
    how = (
        f"convert it locally with `{command}` (it needs network access for the upstream file, or --file "
        f"with a local copy of it); the result is written to {converted_path(name)} and used from then on"
        if command
        else "produce the file yourself and load it with checkpoint_path=PATH"
    )
    return NotPublishedError(
        f"{name} is listed in the manifest but its file has not been published yet (it is to be hosted at "
        f"{manifest.describe_source(entry)})",
        hint=how,
    )


def _stream_url(url: str, tmp: Path, name: str) -> tuple[str, int]:
    """Download ``url`` into ``tmp``; returns (sha256, bytes). Raises if fewer bytes than announced arrive."""
    import urllib.request

    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "zoo", "Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=60) as response, open(tmp, "wb") as out:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        quiet = ("ZOO_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
        disable = any(os.environ.get(v, "").lower() in _TRUE for v in quiet)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=disable,
                  file=sys.stderr, leave=False) as bar:  # fmt: skip
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise IntegrityError(f"download of {name} from {url} was cut off: {received:,} of {total:,} bytes arrived")
    return digest.hexdigest(), received


def _url_download(name: str, entry: WeightsEntry, url: str, dest: Path) -> None:
    import http.client
    import urllib.error

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Temporary files of this target left by a killed process are stale: we hold the lock.
    for stale in dest.parent.glob(f".{dest.name}.*.part"):
        stale.unlink(missing_ok=True)
    # atomic_path: the file appears at dest only complete and verified (synced, renamed, folder synced).
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            sha, size = _stream_url(url, tmp, name)
        except urllib.error.HTTPError as e:
            raise WeightsError(f"could not download {name} from {url}: HTTP {e.code} {e.reason}") from None
        except http.client.IncompleteRead as e:
            raise IntegrityError(
                f"download of {name} from {url} was cut off after {len(e.partial):,} bytes; nothing was cached"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            if isinstance(e, WeightsError):
                raise
            if isinstance(e, OSError) and e.errno in _CACHE_ERRNOS:  # writing, not the network, failed
                raise _cache_error(e, f"writing {dest}") from None
            reason = getattr(e, "reason", e)
            raise WeightsError(f"could not download {name} from {url}: {reason}", hint=_how_to_get_it(name)) from None
        if size != entry.size or sha != entry.sha256:
            raise IntegrityError(
                f"the file downloaded for {name} from {url} does not match the manifest: {size:,} bytes with "
                f"SHA-256 {sha}, expected {entry.size:,} bytes with SHA-256 {entry.sha256}. Nothing was "
                "cached; the server may be serving another file, or the manifest entry is out of date."
            )
    mark_verified(dest, str(entry.sha256))


def _use_converted(name: str, entry: WeightsEntry) -> Path | None:
    path = converted_path(name)
    if not path.is_file():
        return None
    if entry.sha256 is None:
        raise IntegrityError(
            f"{path} was converted locally, but the manifest has no SHA-256 for {name} to check it against; "
            f"run `zoo convert` again so that it records one."
        )
    problem = check_file(path, entry.sha256, entry.size)
    if problem is None:
        return path
    warnings.warn(f"ignoring the locally converted {path}: it {problem}", stacklevel=3)
    return None


def fetch(name: str, force: bool = False) -> Path:
    """A local, verified path to the file of manifest entry ``name`` (``arch.tag``), downloading if needed.

    Bundled files and locally converted files (``zoo convert``) are used in place; Hub and URL files
    come from their caches or are downloaded. ``force`` downloads again even when a good copy is cached.
    """
    arch, _, tag = name.partition(".")
    entry = manifest.get_entry(arch, tag)
    source = manifest.resolve_source(entry)
    if source.type == "bundled":
        path = manifest.bundled_path(source)
        problem = check_file(path, str(entry.sha256), entry.size) if entry.published else "missing"
        if problem:
            raise IntegrityError(
                f"the bundled file of {name}, {path}, {problem}; restore it from the repository (git checkout) "
                "or reinstall zoo"
            )
        return path
    if not force:
        local = _use_converted(name, entry)
        if local is not None:
            return local
    if not entry.published:
        raise not_published_error(name, entry)
    if not force:
        # Warm cache: a verified file needs no lock (nothing writes a file that is in place).
        cached = url_cache_path(name, entry) if source.type == "url" else hub_cached_file(source)
        if cached is not None and cached.exists() and check_file(cached, str(entry.sha256), entry.size) is None:
            return cached

    from filelock import FileLock

    lock_path = cache_dir() / "locks" / f"{name}.lock"
    lock = FileLock(str(lock_path))
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as e:
        raise _cache_error(e, f"creating the lock {lock_path}") from None
    try:
        if source.type == "url":
            return _fetch_url(name, entry, str(source.url), force)
        return _fetch_hub(name, entry, source, force)
    finally:
        lock.release()


_CACHE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def _cache_error(error: OSError, doing: str) -> WeightsError:
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


def _cached_is_good(path: Path, name: str, entry: WeightsEntry) -> bool:
    """Verify a cached file; a bad one is reported (and is an error when offline, as it cannot be replaced)."""
    problem = check_file(path, str(entry.sha256), entry.size)
    if problem is None:
        return True
    if is_offline():
        raise IntegrityError(
            f"the cached file {path} of {name} {problem}, and offline mode is on so it cannot be fetched again",
            hint=_how_to_get_it(name),
        )
    warnings.warn(f"the cached file {path} of {name} {problem}; downloading it again", stacklevel=5)
    return False


def _fetch_url(name: str, entry: WeightsEntry, url: str, force: bool) -> Path:
    dest = url_cache_path(name, entry)
    if dest.exists() and not force:
        if _cached_is_good(dest, name, entry):
            return dest
        dest.unlink()
    if is_offline():
        raise offline_error(name, entry)
    _url_download(name, entry, url, dest)
    return dest


def _fetch_hub(name: str, entry: WeightsEntry, source: Source, force: bool) -> Path:
    cached = hub_cached_file(source)
    if cached is not None and not force:
        if _cached_is_good(cached, name, entry):
            return cached
        # Removed (as a link, never through it) so that huggingface_hub puts a fresh one in its place: it
        # keeps an existing snapshot entry as it is, even when forced to download again.
        drop_hub_file(cached, source)
        force = True
    if is_offline():
        raise offline_error(name, entry)
    what = f"{name} ({source.repo_id}, {source.filename} @ {source.revision})"
    path = hub_download(source, what, force=force, hint=_how_to_get_it(name))
    problem = check_file(path, str(entry.sha256), entry.size)
    if problem is not None:
        drop_hub_file(path, source)
        raise IntegrityError(
            f"the file downloaded for {name} from {manifest.describe_source(entry)} {problem}. Nothing was cached; "
            "the repo may hold another file than the manifest describes."
        )
    return path


def cached_state(name: str) -> str:
    """A short, network-free description of where ``name``'s file is on this machine."""
    arch, _, tag = name.partition(".")
    entry = manifest.get_entry(arch, tag)
    source = manifest.resolve_source(entry)
    if source.type == "bundled":
        return f"bundled ({manifest.bundled_path(source)})"
    candidates = [converted_path(name)]
    if source.type == "hub":
        candidates.append(hub_cached_file(source))
    elif entry.sha256:
        candidates.append(url_cache_path(name, entry))
    for path in candidates:
        if path is not None and path.is_file():
            kind = "converted locally" if path == candidates[0] else "cached"
            ok = entry.sha256 and has_valid_marker(path, entry.sha256)
            return f"{kind} at {path} ({'verified' if ok else 'not verified yet'})"
    return "not cached" if entry.published else "not published yet"
