"""Getting a manifest entry's file onto this machine, verified: from the Hub, an http(s) URL, or the repo.

An entry names a ``source`` and may name ``fallbacks``; :func:`fetch` tries them in order, says which one
served when it was not the first, and names every failure when all fail. What each kind of source needs
(Hub files in huggingface_hub's cache, URL files in ``ZOO_CACHE_DIR``, torchvision pickles converted
once, third-party files verified against upstream's SHA-256 and pinned) is :mod:`zoo.hub.sources`.

Every file is checked against a known SHA-256 before use. A full hash of a large file is paid once: a
marker in ``ZOO_CACHE_DIR/verified`` records the size, mtime, ctime and inode it was verified at, and any
write to the file changes those (:mod:`zoo.hub.verify`). A warm cache is found without network access,
without importing huggingface_hub and without a lock; a cold one is fetched under a file lock per weights,
so concurrent fetches download once.

Names and paths from the manifest are checked where they become paths (:func:`manifest.check_name`,
:func:`manifest.bundled_path`), so an entry cannot make zoo read or write outside its folders, and
nothing is deleted through a link (:func:`zoo.hub.hubcache.drop_hub_file`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

from zoo.errors import IntegrityError, NotPublishedError, OfflineError, WeightsError
from zoo.hub import manifest
from zoo.hub.entry import Source, WeightsEntry
from zoo.hub.hubcache import hf_hub_cache, hub_cached_file
from zoo.hub.sources import (
    cache_error,
    cached,
    converted_record,
    fetch_source,
    how_to_get_it,
    read_pin,
    torch_cache_path,
    url_cache_path,
)  # fmt: skip
from zoo.hub.verify import CHUNK, cache_dir, check_file, has_valid_marker, is_offline, mark_verified, sha256_file
from zoo.utils import env_flag

__all__ = [
    "CHUNK", "Fetched", "cache_dir", "cached_state", "check_file", "converted_path", "fetch", "fetch_file",
    "has_valid_marker", "hf_hub_cache", "hub_cached_file", "is_offline", "mark_verified", "not_published_error",
    "offline_error", "sha256_file", "source_state", "url_cache_path",
]  # fmt: skip


class Fetched(NamedTuple):
    """A verified local file and the (resolved) source that provided it (None: converted locally)."""

    path: Path
    source: Source | None


def converted_path(name: str) -> Path:
    """Where ``zoo convert`` puts a locally converted file for ``arch.tag`` (looked up before the source)."""
    manifest.check_name(name)
    return cache_dir() / "converted" / f"{name}.safetensors"


def offline_error(name: str, entry: WeightsEntry) -> OfflineError:
    """The one error for offline mode: the weights, where they would come from, and what to do."""
    flag = "HF_HUB_OFFLINE" if env_flag("HF_HUB_OFFLINE") else "ZOO_OFFLINE"
    return OfflineError(
        f"{name} is not in the local cache and offline mode is on ({flag}=1); it would come from "
        f"{manifest.describe_source(entry)}",
        hint=how_to_get_it(name, entry),
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


def _use_converted(name: str, entry: WeightsEntry) -> Path | None:
    path = converted_path(name)
    if not path.is_file():
        return None
    expected = converted_record(name) if entry.third_party else (entry.sha256, entry.size)
    if expected is None or expected[0] is None:
        raise IntegrityError(
            f"{path} was converted locally, but neither the manifest nor zoo's cache has a SHA-256 for {name} "
            f"to check it against; run `zoo convert` again so that it records one."
        )
    problem = check_file(path, expected[0], expected[1])
    if problem is None:
        return path
    warnings.warn(f"ignoring the locally converted {path}: it {problem}", stacklevel=3)
    return None


def entry_lock(name: str):  # noqa: ANN202 - a filelock.FileLock, imported here only
    """The acquired file lock of the weights ``name`` (release it): one process fetches a file at a time."""
    from filelock import FileLock

    lock_path = cache_dir() / "locks" / f"{name}.lock"
    lock = FileLock(str(lock_path))
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as e:
        raise cache_error(e, f"creating the lock {lock_path}") from None
    return lock


def fetch_file(name: str, force: bool = False, entry: WeightsEntry | None = None) -> Fetched:
    """A local, verified file of manifest entry ``name`` (``arch.tag``) and the source it came from.

    Bundled files and locally converted files (``zoo convert``) are used in place. Otherwise a verified
    copy of any source in the local caches is used (no network); failing that the sources are fetched in
    order. A source that cannot be reached or lacks the file passes to the next, with a warning naming the
    source that served; a file that fails verification stops everything (:class:`IntegrityError`).
    ``force`` downloads again even when a good copy is cached. ``entry``: the manifest entry of ``name``,
    when the caller has it already.
    """
    if entry is None:
        arch, _, tag = name.partition(".")
        entry = manifest.get_entry(arch, tag)
    sources = manifest.resolve_sources(entry)
    if sources[0].type == "bundled":
        path = manifest.bundled_path(sources[0])
        problem = check_file(path, str(entry.sha256), entry.size) if entry.published else "missing"
        if problem:
            raise IntegrityError(
                f"the bundled file of {name}, {path}, {problem}; restore it from the repository (git checkout) "
                "or reinstall zoo"
            )
        return Fetched(path, sources[0])
    if not force:
        local = _use_converted(name, entry)
        if local is not None:
            return Fetched(local, None)
    if not entry.published:
        raise not_published_error(name, entry)
    if not force:
        # Warm cache: a verified file needs no lock (nothing writes a file that is in place).
        for source in sources:
            path = cached(name, entry, source)
            if path is not None:
                return Fetched(path, source)
    lock = entry_lock(name)
    try:
        failures: list[tuple[Source, WeightsError]] = []
        for source in sources:
            try:
                path = fetch_source(name, entry, source, force)
            except IntegrityError:
                raise
            except WeightsError as e:
                failures.append((source, e))
                continue
            if failures:
                tried = "; ".join(f"{manifest.describe(s)}: {e}" for s, e in failures)
                warnings.warn(f"{name} came from {manifest.describe(source)} after {tried}", stacklevel=3)
            return Fetched(path, source)
    finally:
        lock.release()
    raise _all_failed(name, entry, failures)


def _all_failed(name: str, entry: WeightsEntry, failures: list[tuple[Source, WeightsError]]) -> WeightsError:
    if all(isinstance(e, OfflineError) for _, e in failures):
        return offline_error(name, entry)
    if len(failures) == 1:
        error = failures[0][1]
        error.hint = error.hint or how_to_get_it(name, entry)
        return error
    # Each source's own problem, then one hint: several sources that failed alike must not repeat it.
    lines = "\n".join(f"  {i}. {manifest.describe(s)}: {e.args[0] if e.args else e}"
                      for i, (s, e) in enumerate(failures, 1))  # fmt: skip
    hints = list(dict.fromkeys(e.hint for _, e in failures if e.hint and e.hint != how_to_get_it(name)))
    return WeightsError(f"could not fetch {name} from any of its {len(failures)} sources:\n{lines}",
                        hint="; ".join([*hints, how_to_get_it(name, entry)]))  # fmt: skip


def fetch(name: str, force: bool = False) -> Path:
    """A local, verified path to the file of manifest entry ``name`` (``arch.tag``), downloading if needed.

    See :func:`fetch_file`, which also says which source served.
    """
    return fetch_file(name, force).path


def source_state(name: str, entry: WeightsEntry, source: Source) -> str:
    """A short, network-free description of a (resolved) source's file on this machine, and its pin."""
    if source.type == "bundled":
        return f"bundled ({manifest.bundled_path(source)})"
    sha = source.sha256
    pin = read_pin(name, source) if source.third_party else None
    if source.type == "hub":
        revision = pin["commit"] if pin and not source.pinned else source.revision
        path = hub_cached_file(Source(**{**source.to_dict(), "revision": revision}))
        sha = sha or (pin["sha256"] if pin else None)
    elif source.format == "torch":
        path = torch_cache_path(name, pin["sha256"]) if pin else None
        sha = pin["converted_sha256"] if pin else None
    else:
        path = url_cache_path(name, entry) if entry.sha256 else None
    pinned = ""
    if pin is not None and not source.pinned:
        where = f"commit {pin['commit'][:12]}, " if source.type == "hub" else ""
        pinned = f"; pinned on this machine ({where}sha256 {pin['sha256'][:12]}…)"
    if path is None or not path.is_file():
        return "not cached" + pinned
    ok = sha is not None and has_valid_marker(path, sha)
    return f"cached at {path} ({'verified' if ok else 'not verified yet'}){pinned}"


def cached_state(name: str) -> str:
    """A short, network-free description of where ``name``'s file is on this machine."""
    arch, _, tag = name.partition(".")
    entry = manifest.get_entry(arch, tag)
    sources = manifest.resolve_sources(entry)
    if sources[0].type == "bundled":
        return source_state(name, entry, sources[0])
    local = converted_path(name)
    if local.is_file():
        ok = entry.sha256 and has_valid_marker(local, entry.sha256)
        return f"converted locally at {local} ({'verified' if ok else 'not verified yet'})"
    if not entry.published:
        return "not published yet"
    states = [source_state(name, entry, s) for s in sources]
    return next((s for s in states if s.startswith("cached")), states[0])
