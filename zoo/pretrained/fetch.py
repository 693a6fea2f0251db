"""Getting weights onto this machine, verified: one function per kind of source, and folder names.

An entry names a ``source`` and may name ``fallbacks``; :func:`fetch` tries them in order, says which one
served when it was not the first, and names every failure when all fail. Each kind of source has its own
function: a Hub repo file (huggingface_hub's cache, downloaded by zoo with the announced SHA-256 checked
while streaming), a safetensors URL (``ZOO_CACHE_DIR``), a torchvision ``.pth`` (read with
``weights_only=True`` and converted once) and a bundled file. :func:`resolve_folder` serves timm's names for
weights outside the manifest, ``local-dir:PATH`` and ``hf-hub:ORG/NAME[@REVISION]``: a ``config.json`` (read
as JSON, never executed, capped at 1 MiB, each value checked as a checkpoint header's) beside
``model.safetensors``.

A warm cache is found without network access, without importing huggingface_hub and without a lock; a
cold one is fetched under the entry's lock. Names and paths from the manifest are checked where they become
paths, so an entry cannot make zoo read or write outside its folders. What every file is checked against
is the trust story in ``docs/weights.md``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from zoo.errors import (
    ArgumentValueError,
    IntegrityError,
    NotPublishedError,
    OfflineError,
    WeightsError,
    WeightsFileError,
)
from zoo.models.cfg import check_preprocessing
from zoo.pretrained import manifest
from zoo.pretrained.cache import (
    CACHE_ERRNOS,
    CHUNK,
    cache_dir,
    cache_error,
    check_file,
    converted_path,
    converted_record,
    drop_hub_file,
    entry_lock,
    has_valid_marker,
    hf_hub_cache,
    hub_cached_file,
    is_offline,
    mark_verified,
    read_pin,
    repo_folder,
    sha256_file,
    torch_cache_path,
    url_cache_path,
    write_pin,
)
from zoo.pretrained.files import read_pickle_checkpoint
from zoo.pretrained.manifest import COMMIT_RE, SHA256_RE, Source, WeightsEntry
from zoo.registry import is_model
from zoo.utils import env_flag
from zoo.utils.files import atomic_path, parse_json, remove_stale_temp_files, temp_path_for, write_text_atomic

__all__ = [
    "CONFIG",
    "Fetched",
    "FolderWeights",
    "MAX_CONFIG_BYTES",
    "WEIGHTS",
    "cached",
    "cached_state",
    "download",
    "explain_hub_error",
    "fetch",
    "fetch_file",
    "fetch_source",
    "how_to_get_it",
    "hub_download",
    "hub_file_info",
    "hub_small_file",
    "not_published_error",
    "offline_error",
    "plain_relative",
    "read_config",
    "resolve_folder",
    "source_state",
    "torchvision_cache_file",
    "transport_errors",
    "unreachable",
]


def transport_errors() -> tuple[type[BaseException], ...]:
    """OSError and ValueError (huggingface_hub's own errors derive from them) and the errors of the HTTP
    library huggingface_hub uses, such as a transfer cut mid-body (``RemoteProtocolError``)."""
    found: list[type[BaseException]] = [OSError, ValueError]
    for module, attr in (("httpx2", "HTTPError"), ("httpx2", "StreamError"), ("httpx", "HTTPError"),
                         ("httpx", "StreamError"), ("requests", "RequestException")):  # fmt: skip
        value = getattr(sys.modules.get(module), attr, None)  # only a library huggingface_hub has imported
        if isinstance(value, type) and issubclass(value, BaseException):
            found.append(value)
    return tuple(found)


def _http_status(error: BaseException | None) -> int | None:
    """The HTTP status of the first error in the chain that carries a response."""
    seen = 0
    while error is not None and seen < 10:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def unreachable(error: BaseException | None) -> str | None:
    """Why the network could not be reached at all, when that is what the error chain says (a host name that
    does not resolve, a refused or timed-out connection); None for other failures."""
    import socket

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, socket.gaierror):
            return "no network: the host name did not resolve"
        if isinstance(error, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(error, (socket.timeout, TimeoutError)):
            return "the connection timed out"
        name = type(error).__name__
        if name in ("NameResolutionError", "ConnectError", "ConnectionError", "ConnectTimeout"):
            text = str(error)
            if "resolve" in text or "Name or service not known" in text or "nodename" in text:
                return "no network: the host name did not resolve"
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def explain_hub_error(error: BaseException, what: str, endpoint: str) -> WeightsError:
    status = _http_status(error)
    if status == 404:
        return WeightsError(
            f"{endpoint} answered 404 Not Found for {what}",
            hint="the repo, file or revision does not exist there (or is private): check the manifest entry's "
            "source, ZOO_HUB_ORG and HF_ENDPOINT",
        )
    if status in (401, 403):
        return WeightsError(
            f"{endpoint} refused {what} (HTTP {status})",
            hint="the repo is private or gated: log in with `hf auth login` or set HF_TOKEN",
        )
    if status is not None:
        return WeightsError(f"{endpoint} answered HTTP {status} for {what}", hint="try again later")
    if isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
        full = error.errno == errno.ENOSPC
        return WeightsError(
            f"could not write {what} into the Hugging Face cache {hf_hub_cache()}: {error.strerror}",
            hint="free some space there" if full else "set HF_HOME (or HF_HUB_CACHE) to a writable folder",
        )
    why = unreachable(error)
    if why is not None:
        return WeightsError(f"could not reach {endpoint} for {what} ({why})")
    cause = error.__cause__ or error.__context__
    detail = f"{error}" + (f" ({cause})" if cause is not None and str(cause) not in str(error) else "")
    broken = not isinstance(error, (OSError, ValueError))  # the HTTP library's own: a transfer broke off
    return WeightsError(
        f"could not download {what} from {endpoint}: {' '.join(detail.split())}",
        hint="the transfer broke off; try again (nothing incomplete was kept)" if broken else None,
    )


def plain_relative(text: str, what: str) -> str:
    """``text`` if it is a relative path that stays inside the folder it is joined to, else a WeightsError."""
    parts = text.split("/")
    if not text or "\\" in text or any(part in ("", ".", "..") for part in parts):
        raise WeightsError(f"{what} {text!r} is not a plain relative path: zoo does not turn it into a file name")
    return text


def _stream_hub_file(url: str, tmp: Path, size: int | None, what: str) -> None:
    """Stream a Hub file to ``tmp``, stopping as soon as more bytes than ``size`` arrive."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
    from tqdm.auto import tqdm

    received = 0
    headers = {**build_hf_headers(library_name="zoo"), "Accept-Encoding": "identity"}
    disable = env_flag("ZOO_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
        if response.is_error:
            response.read()
            hf_raise_for_status(response)
        with open(tmp, "wb") as out, tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=what,
                                          disable=disable, file=sys.stderr, leave=False) as bar:  # fmt: skip
            for block in response.iter_bytes(CHUNK):
                received += len(block)
                if size is not None and received > size:
                    raise IntegrityError(
                        f"{what} is larger than the {size:,} bytes expected: zoo stopped reading at {received:,} "
                        "bytes. Nothing was cached."
                    )
                out.write(block)
                bar.update(len(block))


def _link_snapshot(snapshot: Path, blob: Path) -> None:
    """Point ``snapshot`` at ``blob`` with a relative link, as huggingface_hub does (a copy where links fail)."""

    snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(snapshot, ".link")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, snapshot.parent), tmp)
    except OSError:  # no symlinks here (Windows without developer mode): huggingface_hub copies too
        import shutil

        with atomic_path(snapshot) as copy:
            shutil.copyfile(blob, copy)
        return
    os.replace(tmp, snapshot)  # replaces an entry that is there, never writes through it


def hub_download(
    source: Any,
    commit: str,
    sha256: str | None,
    size: int | None,
    what: str,
    hint: str | None = None,
    force: bool = False,
    expected: str = "that was verified",
) -> Path:
    """Download a Hub file at ``commit`` into huggingface_hub's cache layout as blob ``sha256``, verified.

    zoo writes the file itself rather than calling ``hf_hub_download``: huggingface_hub names the blob after
    the ``X-Linked-Etag`` of its own request without checking it, so a hostile endpoint could make it write
    anywhere (docs/weights.md, "Known upstream issues"). Here every name comes from a value zoo checked: a
    40-hex commit, a 64-hex SHA-256, the manifest's file name and revision. The blob appears only complete
    and with the expected SHA-256; any failure is a :class:`WeightsError` that says which. A small git file
    that has no SHA-256 on the Hub (``sha256`` None, ``size`` then a limit) is stored under the SHA-256 of
    what arrived.
    """
    from huggingface_hub import hf_hub_url

    if not COMMIT_RE.fullmatch(commit) or (sha256 is not None and not SHA256_RE.fullmatch(sha256)):
        raise ValueError(f"hub_download needs a checked commit and SHA-256, not {commit!r} and {sha256!r}")
    filename = plain_relative(str(source.filename), "the file name")
    revision = plain_relative(source.revision or "main", "the revision")
    folder = repo_folder(source)
    blob = folder / "blobs" / (sha256 or f"download-{os.getpid()}")
    endpoint = os.environ.get("HF_ENDPOINT") or None
    url = hf_hub_url(str(source.repo_id), filename, revision=commit, endpoint=endpoint)
    try:
        if sha256 is None or force or blob.is_symlink() or check_file(blob, sha256, size) is not None:
            blob.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(blob.parent, (blob.name,))  # a killed download's; the caller holds the lock
            with atomic_path(blob, suffix=".part") as tmp:
                _stream_hub_file(url, tmp, size, what)
                problem = check_file(tmp, sha256, size) if sha256 is not None else None
                if problem is not None:
                    raise IntegrityError(
                        f"the file downloaded for {what} {problem.replace(' (corrupted or replaced)', '')}: it is "
                        f"not the file {expected}. Nothing was cached."
                    )
            if sha256 is None:
                named = blob.with_name(sha256_file(blob))
                os.replace(blob, named)
                blob = named
        snapshot = folder / "snapshots" / commit / filename
        _link_snapshot(snapshot, blob)
        if not COMMIT_RE.fullmatch(revision):  # a branch's refs/ entry, so that timm finds the file too
            write_text_atomic(folder / "refs" / revision, commit)
    except IntegrityError:
        raise
    except transport_errors() as e:
        error = explain_hub_error(e, what, endpoint or "https://huggingface.co")
        if error.hint is None:
            error.hint = hint
        raise error from None
    return snapshot


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


def fetch_hub_file(name: str, source: Source, force: bool = False) -> Path:
    """The verified local file of a Hub ``source`` that no manifest entry describes (timm's own repos, for
    ``zoo convert timm``): checked against the Hub's SHA-256, which is then pinned on this machine as for
    an unpinned manifest source. Takes ``name``'s entry lock."""
    lock = entry_lock(name)
    try:
        return _fetch_hub(name, source, force)
    finally:
        lock.release()


def hub_small_file(repo_id: str, filename: str, revision: str, what: str, limit: int, force: bool = False) -> Path:
    """A small Hub file that carries no SHA-256 (a git file such as ``config.json``), at ``revision``, in
    huggingface_hub's cache layout: from the cache when there, else downloaded (at most ``limit`` bytes) at
    the commit the Hub names and stored under the SHA-256 of what arrived."""
    from types import SimpleNamespace

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
        if isinstance(e, OSError) and e.errno in CACHE_ERRNOS:  # writing, not the network, failed
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

    sha = sha256_file(local)
    try:
        return _convert_pth(name, source, local, sha, local.stat().st_size, f"{local} (torchvision's cache)")
    except IntegrityError as e:
        warnings.warn(f"ignoring {local}: {e}", stacklevel=4)
        return None


def _convert_pth(name: str, source: Source, pth: Path, sha: str, size: int, where: str) -> Path:
    """Check a ``.pth`` (pin, else its name's hash prefix), convert it to safetensors once, pin it."""
    from safetensors.torch import save_file

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


class Fetched(NamedTuple):
    """A verified local file and the (resolved) source that provided it (None: converted locally)."""

    path: Path
    source: Source | None


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


CONFIG = "config.json"
WEIGHTS = "model.safetensors"
MAX_CONFIG_BYTES = 1 << 20
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*")


@dataclass
class FolderWeights:
    """What a folder name resolves to: the architecture, its builder arguments, the preprocessing from
    ``config.json`` and (with ``pretrained``) the weights file."""

    name: str
    arch: str
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None


def read_config(path: Path, what: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(architecture, model_args, pretrained_cfg) from a timm-layout ``config.json``, each checked."""

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise WeightsFileError(f"it is larger than {MAX_CONFIG_BYTES:,} bytes")
        config = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsFileError(f"{what} has no {CONFIG}", hint=f"a folder in timm's layout holds {CONFIG} and "
                               f"{WEIGHTS} (what `zoo publish` writes)") from None  # fmt: skip
    except (OSError, ValueError) as e:
        raise WeightsFileError(f"{path} cannot be read as a model's config ({e})") from None
    arch = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(arch, str) or not is_model(arch):
        raise WeightsFileError(
            f"{path} names the architecture {arch!r}, which is not a zoo model", hint="`zoo list` lists them"
        )
    model_args = config.get("model_args") or {}
    cfg = dict(config.get("pretrained_cfg") or {})
    if not isinstance(model_args, dict) or not isinstance(cfg, dict):
        raise WeightsFileError(f"{path}: model_args and pretrained_cfg must be objects")
    if isinstance(config.get("num_classes"), int):
        cfg.setdefault("num_classes", config["num_classes"])
    if config.get("label_names"):
        cfg["label_names"] = config["label_names"]
    keep = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes", "label_names")
    try:
        checked = check_preprocessing({k: v for k, v in cfg.items() if k in keep})
    except ValueError as e:
        message = str(e).replace("the zoo metadata zoo.pretrained_cfg", "pretrained_cfg")
        raise WeightsFileError(f"{path}: {message}") from None
    args = {k: v for k, v in model_args.items() if k not in ("num_classes", "in_chans")}
    if checked.get("num_classes") is not None:
        args["num_classes"] = checked["num_classes"]
    if checked.get("input_size"):
        args["in_chans"] = checked["input_size"][0]
    return arch, args, checked


def _hub_parts(spec: str) -> tuple[str, str]:
    repo, _, revision = spec.partition("@")
    # The revision is checked as a manifest's Hub source checks it (Source below), but as the argument it is.
    bad_revision = revision.startswith("/") or ".." in revision.split("/")
    if not _REPO_RE.fullmatch(repo) or ".." in repo or bad_revision:
        raise ArgumentValueError(f"hf-hub:{spec}: give a Hub repo as hf-hub:ORG/NAME (optionally @REVISION)")
    return repo, revision or "main"


def _pin_name(repo: str) -> str:
    """A weights-name-shaped key for the repo's pins and lock (``arch.tag``'s characters only)."""
    return "hf_hub." + re.sub(r"[^A-Za-z0-9_\-]", "-", repo)[:110]


def resolve_folder(name: str, pretrained: bool, force: bool = False) -> FolderWeights:
    """The architecture, arguments, preprocessing and (``pretrained``) weights file a folder name stands for."""
    kind, _, spec = name.partition(":")
    if kind == "local-dir":
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise WeightsFileError(f"{name}: {folder} is not a folder")
        arch, args, cfg = read_config(folder / CONFIG, str(folder))
        weights = folder / WEIGHTS if pretrained else None
        if weights is not None and not weights.is_file():
            raise WeightsFileError(f"{name}: {folder} has no {WEIGHTS}")
        return FolderWeights(name, arch, args, cfg, weights)

    repo, revision = _hub_parts(spec)
    config_path = hub_small_file(repo, CONFIG, revision, f"{CONFIG} of {repo}", MAX_CONFIG_BYTES, force)
    arch, args, cfg = read_config(config_path, f"hf-hub:{repo}")
    weights = None
    if pretrained:
        pin = _pin_name(repo)
        source = Source(type="hub", repo_id=repo, filename=WEIGHTS, revision=revision)
        lock = entry_lock(pin)
        try:
            weights = fetch_source(pin, None, source, force)  # type: ignore[arg-type]  # a Hub source needs no entry
        except WeightsError as e:
            raise type(e)(f"hf-hub:{repo}: {e.args[0] if e.args else e}", hint=e.hint) from None
        finally:
            lock.release()
    return FolderWeights(name, arch, args, cfg, weights)
