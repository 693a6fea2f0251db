"""Getting a manifest entry's file onto this machine, verified: the Hub, an http(s) URL, or the repo.

* Hub files live in huggingface_hub's own cache (``HF_HOME``/``HF_HUB_CACHE``) and are fetched with
  ``hf_hub_download`` (so ``HF_ENDPOINT``, tokens and mirrors work). A warm cache is found by reading the
  cache layout directly, so that loading never pays for importing huggingface_hub.
* URL files are streamed (with a progress bar) to a temporary file next to their place in
  ``ZOO_CACHE_DIR``, hashed on the way, and renamed into place only when size and SHA-256 match.
* Bundled files sit in ``weights/`` beside the manifest.

Every file is checked against the manifest's SHA-256 before use. A full hash of a large file is paid
once: a marker in ``ZOO_CACHE_DIR/verified`` records the size, mtime, ctime and inode it was verified
at, and any write to the file changes those. A cached file that fails the check is reported and
fetched again; it is never loaded. A file lock per weights makes concurrent fetches download once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from zoo.errors import IntegrityError, NotPublishedError, OfflineError, WeightsError
from zoo.hub import manifest
from zoo.hub.entry import Source, WeightsEntry
from zoo.utils.files import atomic_path, write_text_atomic

_TRUE = ("1", "true", "yes", "on")
CHUNK = 1 << 20


def cache_dir() -> Path:
    """zoo's cache: ``ZOO_CACHE_DIR``, default ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo").expanduser()


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``ZOO_OFFLINE`` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "ZOO_OFFLINE"))


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder, worked out from the environment as huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def converted_path(name: str) -> Path:
    """Where ``zoo convert`` puts a locally converted file for ``arch.tag`` (looked up before the source)."""
    return cache_dir() / "converted" / f"{name}.safetensors"


def url_cache_path(name: str, entry: WeightsEntry) -> Path:
    """Where the file of a URL entry is cached."""
    # The SHA prefix keeps a stale file from an older manifest from being mistaken for the new one.
    return cache_dir() / "weights" / f"{name}-{str(entry.sha256)[:12]}.safetensors"


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


def _stamp(st: os.stat_result, sha256: str) -> dict[str, Any]:
    # ctime cannot be set from user space, so an edit that restores mtime still changes the stamp.
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino}  # fmt: skip


def has_valid_marker(path: Path, sha256: str) -> bool:
    """True when ``path`` was verified against ``sha256`` and has not changed since."""
    try:
        st = path.stat()
        recorded = json.loads(_marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == _stamp(st, sha256)


def mark_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` (as it is now) has SHA-256 ``sha256``; best effort on a read-only cache."""
    with contextlib.suppress(OSError):
        write_text_atomic(_marker_path(path), json.dumps(_stamp(path.stat(), sha256)))


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
    actual = sha256_file(path)
    if actual != sha256:
        return f"has SHA-256 {actual} instead of {sha256} (corrupted or replaced)"
    mark_verified(path, sha256)
    return None


def _how_to_get_it(name: str) -> str:
    return (
        f"Pre-fetch it on a machine with network access with `zoo download {name}` (and copy ZOO_CACHE_DIR and "
        f"HF_HOME over), or load a local safetensors file with create_model(..., checkpoint_path=PATH) or "
        f"zoo.load_weights(model, PATH)."
    )


def offline_error(name: str, entry: WeightsEntry) -> OfflineError:
    """The one error for offline mode: the weights, where they would come from, and what to do."""
    flag = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE else "ZOO_OFFLINE"
    return OfflineError(
        f"{name} is not in the local cache and offline mode is on ({flag}=1). It would come from "
        f"{manifest.describe_source(entry)}. {_how_to_get_it(name)}"
    )


def not_published_error(name: str, entry: WeightsEntry) -> NotPublishedError:
    """Explain that an unpublished entry has no file to fetch and how to make one locally."""
    command = (entry.origin or {}).get("command")
    how = (
        f"Convert it locally with `{command}` (it needs network access for the upstream file, or --file "
        f"with a local copy of it); the result is written to {converted_path(name)} and used from then on."
        if command
        else "Produce the file yourself and load it with checkpoint_path=PATH."
    )
    return NotPublishedError(
        f"{name} is listed in the manifest but its file has not been published yet (it is to be hosted at "
        f"{manifest.describe_source(entry)}). {how}"
    )


def _drop_hub_file(path: Path) -> None:
    # Remove both the snapshot link and the blob it points to, so that nothing bad stays cached.
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hub_cached_file(source: Source) -> Path | None:
    """The file huggingface_hub cached for a (resolved) Hub source, found without importing huggingface_hub.

    This reads huggingface_hub's documented cache layout (``models--org--name/refs/<branch>`` holds a
    commit, ``snapshots/<commit>/<file>`` the file) instead of calling ``try_to_load_from_cache``: importing
    huggingface_hub costs more than loading a small model, and a warm cache must not pay for it.
    tests/test_weights_fetch.py checks that both agree.
    """
    folder = hf_hub_cache() / ("models--" + str(source.repo_id).replace("/", "--"))
    revision = source.revision or "main"
    commit = revision
    if not (len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)):
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    path = folder / "snapshots" / commit / str(source.filename)
    return path if path.exists() else None


def _hub_download(name: str, entry: WeightsEntry, source: Source, force: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now: huggingface_hub reads it once, at import
    try:
        path = hf_hub_download(
            str(source.repo_id), str(source.filename), revision=source.revision, cache_dir=hf_hub_cache(),
            endpoint=endpoint, force_download=force, library_name="zoo",
        )  # fmt: skip
    except LocalEntryNotFoundError as e:
        raise WeightsError(
            f"could not download {name} from {manifest.describe_source(entry)} via "
            f"{endpoint or 'https://huggingface.co'}: {e}. {_how_to_get_it(name)}"
        ) from None
    except (EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        # ValueError: huggingface_hub's "force download failed" when the server cannot be reached.
        raise WeightsError(f"could not download {name} from {manifest.describe_source(entry)}: {e}") from None
    return Path(path)


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
            reason = getattr(e, "reason", e)
            raise WeightsError(f"could not download {name} from {url}: {reason}. {_how_to_get_it(name)}") from None
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
        path = manifest.weights_dir() / str(source.path)
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
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        if source.type == "url":
            return _fetch_url(name, entry, str(source.url), force)
        return _fetch_hub(name, entry, source, force)


def _cached_is_good(path: Path, name: str, entry: WeightsEntry) -> bool:
    """Verify a cached file; a bad one is reported (and is an error when offline, as it cannot be replaced)."""
    problem = check_file(path, str(entry.sha256), entry.size)
    if problem is None:
        return True
    if is_offline():
        raise IntegrityError(
            f"the cached file {path} of {name} {problem}, and offline mode is on so it cannot be fetched again. "
            f"{_how_to_get_it(name)}"
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
        force = True
    if is_offline():
        raise offline_error(name, entry)
    path = _hub_download(name, entry, source, force=force)
    problem = check_file(path, str(entry.sha256), entry.size)
    if problem is not None:
        _drop_hub_file(path)
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
        return f"bundled ({manifest.weights_dir() / str(source.path)})"
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
