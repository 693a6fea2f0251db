"""Fetching one source of an entry, verified: a Hub repo file, a safetensors URL, or a torchvision ``.pth``.

What a file is checked against, in order of preference:

* the manifest's SHA-256: the entry's own (zoo's files) or the source's (``zoo pin`` wrote it);
* the pin this machine recorded when it first fetched a third-party file (``ZOO_CACHE_DIR/pins``);
* upstream's own statement, on first fetch: for a Hub file in LFS/Xet storage the resolve request's
  ``X-Linked-Etag`` is the file's SHA-256 (huggingface_hub does not check it; zoo does), and a
  torchvision file name carries the first hex digits of its SHA-256 (checked as torchvision does).

A pin records the Hub commit the file was fetched at, with its SHA-256 and size; from then on the file
is fetched at that commit, and a Hub that reports another SHA-256 there is refused (:class:`IntegrityError`):
a commit's files cannot change, so a change means the file is not the one that was verified. A pickle is
read only with ``torch.load(weights_only=True)`` (tensors, never code) and converted once to safetensors.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoo.errors import IntegrityError, OfflineError, WeightsError, WeightsFileError
from zoo.hub import manifest
from zoo.hub.entry import COMMIT_RE, SHA256_RE, Source, WeightsEntry
from zoo.hub.hubcache import (
    drop_hub_file,
    explain_hub_error,
    hub_cached_file,
    hub_download,
    transport_errors,
    unreachable,
)
from zoo.hub.pins import converted_record, read_pin, record_converted, remove_pins, write_pin
from zoo.hub.verify import CHUNK, cache_dir, check_file, is_offline, mark_verified
from zoo.utils import env_flag
from zoo.utils.files import atomic_path

__all__ = [
    "cache_error", "cached", "converted_record", "download", "fetch_source", "how_to_get_it", "hub_file_info",
    "hub_small_file", "read_pin", "record_converted", "remove_pins", "torch_cache_path", "url_cache_path",
]  # fmt: skip

_CACHE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def how_to_get_it(name: str, entry: WeightsEntry | None = None) -> str:
    """What a user without network access can do to get the weights ``name``: fetch them elsewhere, load a local
    file, or, for torchvision's weights, convert the ``.pth`` file torchvision downloads."""
    ways = [
        f"on a machine that has network access run `zoo download {name}` and copy ZOO_CACHE_DIR and HF_HOME here",
        "load a local safetensors file with create_model(..., checkpoint_path=PATH)",
    ]
    origin = (entry.origin or {}) if entry is not None else {}
    upstream, url = str(origin.get("upstream", "")), str(origin.get("url", ""))
    if upstream.startswith("torchvision.models.") and url.endswith(".pth"):
        weights = upstream.rsplit(".", 1)[-1]
        ways.append(f"convert torchvision's own file: `zoo convert torchvision {name.split('.')[0]} --weights "
                    f"{weights} --file {url.rsplit('/', 1)[-1]}`")  # fmt: skip
    return "; or ".join(ways)


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


def _offline(name: str) -> OfflineError:
    # fetch_file turns this into offline_error() when no source is left; its text only shows if one is.
    return OfflineError(f"{name} is not in the local cache and offline mode is on", hint=how_to_get_it(name))


def _replace_bad_cache(path: Path, name: str, problem: str) -> None:
    """A cached file that fails verification: an error offline (it cannot be replaced), else a warning."""
    if is_offline():
        raise IntegrityError(
            f"the cached file {path} of {name} {problem}, and offline mode is on so it cannot be fetched again",
            hint=how_to_get_it(name),
        )
    warnings.warn(f"the cached file {path} of {name} {problem}; downloading it again", stacklevel=5)


def _changed_upstream(name: str, source: Source, where: str, pinned: str, now: str) -> IntegrityError:
    return IntegrityError(
        f"{manifest.describe(source)} changed upstream: {name} was pinned with SHA-256 {pinned} at {where}, and "
        f"upstream now has SHA-256 {now} there. zoo does not use a file that differs from the one it verified; "
        "nothing was cached",
        hint=f"if the new file is legitimate, forget the pin with `zoo download {name} --unpin` (and re-pin the "
        "manifest with `zoo pin`)",
    )


# -------------------------------------------------------------------------------------------- Hub


def hub_file_info(source: Source, what: str) -> tuple[str, str | None, int | None]:
    """(commit, SHA-256 or None, size) of a Hub file at ``source.revision``, as the Hub reports them.

    The SHA-256 is the ``X-Linked-Etag`` of an LFS/Xet file; a plain git file has a 40-hex git hash
    there instead, reported as None.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT") or None
    url = hf_hub_url(str(source.repo_id), str(source.filename), revision=source.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url)
    except transport_errors() as e:
        raise explain_hub_error(e, what, endpoint or "https://huggingface.co") from None
    commit = meta.commit_hash or ""
    if not COMMIT_RE.fullmatch(commit):
        raise WeightsError(f"the Hub did not say which commit serves {what} (X-Repo-Commit is {commit!r})")
    etag = (meta.etag or "").strip('"').lower()
    return commit, etag if SHA256_RE.fullmatch(etag) else None, meta.size


def _snapshot_commit(path: Path, source: Source) -> str:
    """The commit of a Hub cache file: its folder in ``snapshots/<commit>/<filename>``."""
    return path.parents[len(Path(str(source.filename)).parts) - 1].name


def _hub_cached(name: str, source: Source) -> Path | None:
    sha, size = source.sha256, source.size
    revision = source.revision or "main"
    if sha is None or not COMMIT_RE.fullmatch(revision):
        pin = read_pin(name, source)
        if pin is not None and (sha is None or pin["sha256"] == sha):
            sha, size, revision = pin["sha256"], pin.get("size"), pin["commit"]
    if sha is None:
        return None
    path = hub_cached_file(replace(source, revision=revision))
    return path if path is not None and check_file(path, sha, size) is None else None


def _adopt_hub_cache(name: str, source: Source) -> Path | None:
    """Offline, unpinned: a file huggingface_hub cached (say, for timm) is used if it hashes to its blob's name.

    huggingface_hub names a blob after the ``X-Linked-Etag`` it was downloaded under, the Hub's SHA-256.
    """
    path = hub_cached_file(source)
    if path is None or not path.is_symlink():
        return None
    blob = Path(os.readlink(path)).name
    commit = _snapshot_commit(path, source)
    if not SHA256_RE.fullmatch(blob) or not COMMIT_RE.fullmatch(commit) or check_file(path, blob, None) is not None:
        return None
    write_pin(name, source, {"commit": commit, "sha256": blob, "size": path.stat().st_size})
    return path


def _fetch_hub(name: str, source: Source, force: bool) -> Path:
    sha, size = source.sha256, source.size
    pin = read_pin(name, source)
    revision = source.revision or "main"
    if pin is not None and not COMMIT_RE.fullmatch(revision):
        revision = pin["commit"]  # fetched at the commit that was verified, not wherever the branch is now
    pinned = sha or (pin["sha256"] if pin is not None else None)
    if not force:
        path = _hub_cached(name, source)
        if path is not None:
            return path
        stale = hub_cached_file(replace(source, revision=revision))
        problem = check_file(stale, pinned, size) if stale is not None and pinned is not None else None
        if stale is not None and problem is not None:
            _replace_bad_cache(stale, name, problem)
            # Removed (as a link, never through it): huggingface_hub keeps an existing snapshot entry otherwise.
            drop_hub_file(stale, source)
            force = True
    if is_offline():
        adopted = _adopt_hub_cache(name, source) if pinned is None else None
        if adopted is not None:
            return adopted
        raise _offline(name)
    what = f"{name} ({source.repo_id}, {source.filename} @ {revision})"
    commit, hub_sha, hub_size = hub_file_info(replace(source, revision=revision), what)
    if COMMIT_RE.fullmatch(revision) and commit != revision:
        raise IntegrityError(f"the Hub answered for {what} with commit {commit}, not the pinned {revision}")
    if pinned is None and hub_sha is None:
        raise IntegrityError(
            f"the Hub reports no SHA-256 for {what} (the file is not in LFS/Xet storage), and the manifest pins "
            "none: zoo cannot verify it", hint="pin its SHA-256 in the manifest (`zoo pin`) after checking the file",
        )  # fmt: skip
    if pinned is not None and hub_sha is not None and hub_sha != pinned:
        if pin is not None and sha is None:
            raise _changed_upstream(name, source, f"commit {commit}", pinned, hub_sha)
        raise IntegrityError(
            f"the Hub serves another file for {what} than the manifest describes: SHA-256 {hub_sha}, expected "
            f"{pinned}. Nothing was downloaded; the repo may hold another file than the manifest describes."
        )
    want, want_size = pinned or str(hub_sha), size if pinned else (size or hub_size)
    # Fetched at the commit just checked: a branch moving between the two requests cannot swap the file.
    said = "the manifest describes" if sha else "the Hub announced"
    path = hub_download(
        replace(source, revision=revision), commit, want, want_size, what, how_to_get_it(name), force, expected=said
    )
    write_pin(name, source, {"commit": commit, "sha256": want, "size": path.stat().st_size})
    return path


def hub_small_file(repo_id: str, filename: str, revision: str, what: str, limit: int, force: bool = False) -> Path:
    """A small Hub file that carries no SHA-256 (a git file such as ``config.json``), at ``revision``, in
    huggingface_hub's cache layout: from the cache when there, else downloaded (at most ``limit`` bytes) at
    the commit the Hub names and stored under the SHA-256 of what arrived."""
    from types import SimpleNamespace

    from zoo.hub.hubcache import plain_relative

    # Not a Source: those name .safetensors files only. hub_cached_file and hub_download read these three.
    here: Any = SimpleNamespace(repo_id=repo_id, filename=plain_relative(filename, "the file name"), revision=revision)
    cached_path = hub_cached_file(here) if not force else None
    if cached_path is not None and cached_path.is_file():
        return cached_path
    if is_offline():
        raise OfflineError(f"{what} is not in the Hugging Face cache, and downloads are off (offline mode)")
    commit, _, size = hub_file_info(here, what)
    if size is not None and size > limit:
        raise IntegrityError(f"the Hub announces {size:,} bytes for {what}; zoo reads at most {limit:,}")
    return hub_download(here, commit, None, limit, what, force=force)


# ------------------------------------------------------------------------------------------- URLs


def url_cache_path(name: str, entry: WeightsEntry) -> Path:
    """Where the file of a safetensors URL entry is cached."""
    # The SHA prefix keeps a stale file from an older manifest from being mistaken for the new one.
    manifest.check_name(name)
    return cache_dir() / "weights" / f"{name}-{str(entry.sha256)[:12]}.safetensors"


def _stream_url(url: str, tmp: Path, name: str, limit: int | None = None) -> tuple[str, int]:
    """Download ``url`` into ``tmp``; returns (sha256, bytes). Raises if fewer bytes than announced arrive, or
    (without reading on) as soon as more than ``limit`` bytes are announced or arrive."""
    import urllib.request

    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "zoo", "Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=60) as response, open(tmp, "wb") as out:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        if limit is not None and total is not None and total > limit:
            raise _too_large(name, url, total, limit, "announced")
        quiet = ("ZOO_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
        disable = env_flag(*quiet)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=disable,
                  file=sys.stderr, leave=False) as bar:  # fmt: skip
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                received += len(block)
                if limit is not None and received > limit:
                    raise _too_large(name, url, received, limit, "received at least")
                bar.update(len(block))
    if total is not None and received != total:
        raise IntegrityError(f"download of {name} from {url} was cut off: {received:,} of {total:,} bytes arrived")
    return digest.hexdigest(), received


def _too_large(name: str, url: str, got: int, limit: int, how: str) -> IntegrityError:
    return IntegrityError(
        f"{url} {how} {got:,} bytes for {name}, and the manifest describes a file of {limit:,}: zoo stopped "
        "reading. Nothing was cached; the server may be serving another file, or the manifest entry is out of date."
    )


def download(name: str, url: str, tmp: Path, dest: Path, limit: int | None = None) -> tuple[str, int]:
    """Stream ``url`` to ``tmp`` (at most ``limit`` bytes); any failure is a WeightsError that says which
    (nothing is kept)."""
    import http.client
    import urllib.error

    try:
        return _stream_url(url, tmp, name, limit)
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
            raise cache_error(e, f"writing {dest}") from None
        why = unreachable(e)
        if why is not None:
            raise WeightsError(f"could not reach {url} ({why})") from None
        reason = getattr(e, "reason", e)
        raise WeightsError(f"could not download {name} from {url}: {reason}", hint=how_to_get_it(name)) from None


def _clear_stale_parts(dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Temporary files of this target left by a killed process are stale: the caller holds the lock.
    for stale in dest.parent.glob(f".{dest.name}.*.part"):
        stale.unlink(missing_ok=True)


def _fetch_url(name: str, entry: WeightsEntry, source: Source, force: bool) -> Path:
    dest = url_cache_path(name, entry)
    if dest.exists() and not force:
        problem = check_file(dest, str(entry.sha256), entry.size)
        if problem is None:
            return dest
        _replace_bad_cache(dest, name, problem)
        dest.unlink()
    if is_offline():
        raise _offline(name)
    _clear_stale_parts(dest)
    # atomic_path: the file appears at dest only complete and verified (synced, renamed, folder synced).
    with atomic_path(dest, suffix=".part") as tmp:
        sha, size = download(name, str(source.url), tmp, dest, limit=entry.size)
        if size != entry.size or sha != entry.sha256:
            raise IntegrityError(
                f"the file downloaded for {name} from {source.url} does not match the manifest: {size:,} bytes with "
                f"SHA-256 {sha}, expected {entry.size:,} bytes with SHA-256 {entry.sha256}. Nothing was "
                "cached; the server may be serving another file, or the manifest entry is out of date."
            )
    mark_verified(dest, str(entry.sha256))
    return dest


def torch_cache_path(name: str, upstream_sha: str) -> Path:
    """Where the safetensors file converted from a torchvision ``.pth`` of SHA-256 ``upstream_sha`` is kept."""
    return cache_dir() / "weights" / f"{manifest.check_name(name)}-{upstream_sha[:12]}.safetensors"


def _torch_cached(name: str, source: Source) -> Path | None:
    pin = read_pin(name, source)
    if pin is None or (source.sha256 is not None and pin["sha256"] != source.sha256):
        return None
    path = torch_cache_path(name, pin["sha256"])
    ok = path.is_file() and check_file(path, pin["converted_sha256"], pin.get("converted_size")) is None
    return path if ok else None


def torchvision_cache_file(source: Source) -> Path | None:
    """The file torchvision itself downloaded for this URL (``$TORCH_HOME/hub/checkpoints/<name>``), if any."""
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(str(source.url)).name
    return path if path.is_file() else None


def _from_torchvision_cache(name: str, source: Source) -> Path | None:
    """torchvision's own download of the file, checked as a download is and converted once; None if absent."""
    local = torchvision_cache_file(source)
    if local is None:
        return None
    from zoo.hub.verify import sha256_file

    sha = sha256_file(local)
    try:
        return _convert_pth(name, source, local, sha, local.stat().st_size, f"{local} (torchvision's cache)")
    except IntegrityError as e:
        warnings.warn(f"ignoring {local}: {e}", stacklevel=4)
        return None


def _convert_pth(name: str, source: Source, pth: Path, sha: str, size: int, where: str) -> Path:
    """Check a ``.pth`` (pin, else its name's hash prefix), convert it to safetensors once, pin it."""
    from safetensors.torch import save_file

    from zoo.hub.pickles import read_pickle_checkpoint
    from zoo.hub.verify import sha256_file

    pin = read_pin(name, source)
    pinned = source.sha256 or (pin["sha256"] if pin is not None else None)
    url = str(source.url)
    if pinned is not None and sha != pinned:
        if source.sha256 is None:
            raise _changed_upstream(name, source, url, pinned, sha)
        raise IntegrityError(f"the file for {name} from {where} has SHA-256 {sha}; the manifest pins {pinned}")
    prefix = source.hash_prefix
    if pinned is None and (prefix is None or not sha.startswith(prefix)):
        raise IntegrityError(
            f"the file for {name} from {where} has SHA-256 {sha}, which does not start with the {prefix} its "
            "name promises: it is not the published file. Nothing was cached."
        )
    try:
        state = read_pickle_checkpoint(pth)  # weights_only: tensors and containers, never code
    except WeightsFileError as e:
        raise IntegrityError(f"the file for {name} from {where} was refused: {e}. Nothing was cached.") from None
    dest = torch_cache_path(name, sha)
    with atomic_path(dest, suffix=".part") as out:
        save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata={"format": "pt", "source": url})
    del state
    converted_sha = sha256_file(dest)
    mark_verified(dest, converted_sha)
    record = {"sha256": sha, "size": size, "converted_sha256": converted_sha, "converted_size": dest.stat().st_size}
    write_pin(name, source, record)
    return dest


def _fetch_torch_url(name: str, source: Source, force: bool) -> Path:
    """A torchvision-style ``.pth``: torchvision's own download when it has one, else downloaded; checked (pin,
    else the name's hash prefix) and converted once."""
    if not force:
        cached_path = _torch_cached(name, source) or _from_torchvision_cache(name, source)
        if cached_path is not None:
            return cached_path
    if is_offline():
        raise _offline(name)
    url = str(source.url)
    part_of = cache_dir() / "downloads" / f"{manifest.check_name(name)}.pth"
    _clear_stale_parts(part_of)
    tmp = part_of.parent / f".{part_of.name}.{os.getpid()}.part"
    try:
        sha, size = download(name, url, tmp, part_of)
        return _convert_pth(name, source, tmp, sha, size, url)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ entry points


def cached(name: str, entry: WeightsEntry, source: Source) -> Path | None:
    """The verified local file of a (resolved) source, without network access or a lock; None if there is none."""
    if source.type == "hub":
        return _hub_cached(name, source)
    if source.format == "torch":
        return _torch_cached(name, source) or _from_torchvision_cache(name, source)
    dest = url_cache_path(name, entry)
    ok = dest.exists() and entry.sha256 is not None and check_file(dest, entry.sha256, entry.size) is None
    return dest if ok else None


def fetch_source(name: str, entry: WeightsEntry, source: Source, force: bool) -> Path:
    """The verified local file of one (resolved, non-bundled) source, downloaded if needed; the caller holds
    the entry's lock."""
    if source.type == "hub":
        return _fetch_hub(name, source, force)
    if source.format == "torch":
        return _fetch_torch_url(name, source, force)
    return _fetch_url(name, entry, source, force)
