"""Hub files: huggingface_hub's cache read without importing it, downloads, and what went wrong in words.

Bad files are removed from the cache without ever following a link out of it: a snapshot entry is
unlinked as an entry, and the blob it points to only when that blob is in the repo's own ``blobs/``
folder. A file of the user's that a link points to is never deleted.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

from zoo.errors import IntegrityError, WeightsError
from zoo.hub.entry import COMMIT_RE, SHA256_RE, Source

__all__ = [
    "drop_hub_file", "explain_hub_error", "hf_hub_cache", "hub_cached_file", "hub_download", "plain_relative",
    "repo_folder",
    "transport_errors",
]  # fmt: skip


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

    from zoo.hub.verify import CHUNK
    from zoo.utils import env_flag

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
    from zoo.utils.files import atomic_path, temp_path_for

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

    from zoo.hub.verify import check_file, sha256_file
    from zoo.utils.files import atomic_path, remove_stale_temp_files, write_text_atomic

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
