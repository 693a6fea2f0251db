"""Getting a verified file of a manifest entry, or of a ``local-dir:``/``hf-hub:`` folder, onto this machine.

Every file goes through :func:`download` into ``ZOO_CACHE_DIR/files/<sha256>``; Hub files are fetched at the commit
a ``HEAD`` named, so every name zoo writes comes from a checked hash. The trust story is in docs/weights.md.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from zoo.errors import (
    ArgumentValueError,
    IntegrityError,
    NotPublishedError,
    OfflineError,
    WeightsError,
    WeightsFileError,
)
from zoo.pretrained import cache, manifest
from zoo.pretrained.files import read_pickle_checkpoint, save_weights
from zoo.pretrained.manifest import Source, WeightsEntry, weights_dir
from zoo.utils import env_flag, progress
from zoo.utils.checks import Invalid, is_hex, json_object, read_bounded, repo_id, reported, revision
from zoo.utils.files import atomic_path, parse_json, remove_stale_temp_files

MAX_DOWNLOAD = 4 << 30  # larger than any weights zoo lists (vgg19_bn's .pth is 549 MB)
MAX_CONFIG_BYTES = 1 << 20
CONFIG, WEIGHTS = "config.json", "model.safetensors"
_CACHE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def endpoint() -> str:
    """The Hub: ``HF_ENDPOINT``, default https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_url(repo: str, filename: str, rev: str) -> str:
    return f"{endpoint()}/{repo}/resolve/{quote(rev, safe='')}/{quote(filename)}"


def _token() -> str | None:
    token = os.environ.get("HF_TOKEN")
    if token is None:
        home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
        path = Path(os.environ.get("HF_TOKEN_PATH") or Path(home) / "token")
        token = path.read_text().strip() if path.is_file() else None
    return token or None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a Hub HEAD answers in its 302 (LFS files)
        return None


def _why(error: BaseException) -> str | None:
    """The network could not be reached at all, when the error chain says so; else None."""
    while error is not None:
        if isinstance(error, socket.gaierror):
            return "no network: the host name did not resolve"
        if isinstance(error, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(error, (socket.timeout, TimeoutError)):
            return "the connection timed out"
        error = getattr(error, "reason", None) or error.__cause__ or error.__context__  # type: ignore[assignment]
    return None


def _open(url: str, what: str, method: str = "GET") -> Any:
    """The response to ``method url``; any failure is a WeightsError saying whether the server said no (and which
    status) or could not be reached."""
    headers = {"User-Agent": "zoo", "Accept-Encoding": "identity"}
    if url.startswith(endpoint()) and _token():
        headers["Authorization"] = f"Bearer {_token()}"
    request = urllib.request.Request(url, headers=headers, method=method)
    opener = urllib.request.build_opener(_NoRedirect) if method == "HEAD" else urllib.request.build_opener()
    host = url.split("/")[2] if "//" in url else url
    try:
        return opener.open(request, timeout=60)
    except urllib.error.HTTPError as e:
        if method == "HEAD" and 300 <= e.code < 400:
            return e  # the redirect's own headers carry the Hub's commit and SHA-256
        hint = {
            404: "the repo, file or revision does not exist there (or is private): check the source, "
            "ZOO_HUB_ORG and HF_ENDPOINT",
            401: "log in with `hf auth login` or set HF_TOKEN",
            403: "the repo is private or gated: set HF_TOKEN",
        }.get(e.code, "try again later")
        raise WeightsError(f"{host} answered HTTP {e.code} {e.reason} for {what}", hint=hint) from None
    except (OSError, http.client.HTTPException) as e:
        why = _why(e) or f"{type(e).__name__}: {e}"
        raise WeightsError(f"could not reach {host} for {what} ({why})") from None


def hub_file_info(repo: str, filename: str, rev: str, what: str) -> tuple[str, str | None, int | None]:
    """(commit, SHA-256 or None, size) of a Hub file at ``rev``, as the Hub reports them: the commit is
    ``X-Repo-Commit``, the SHA-256 an LFS/Xet file's ``X-Linked-Etag`` (a plain git file has none)."""
    with _open(hub_url(repo, filename, rev), what, "HEAD") as response:
        head = response.headers
    commit = (head.get("X-Repo-Commit") or "").strip()
    if not is_hex(commit, 40):
        raise WeightsError(f"the Hub did not say which commit serves {what} (X-Repo-Commit {commit[:80]!r})")
    etag = (head.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"').lower()
    size = head.get("X-Linked-Size") or head.get("Content-Length") or ""
    sha = etag if is_hex(etag, 64) else None
    return commit, sha, int(size) if size.isdigit() else None


def download(
    url: str,
    what: str,
    *,
    sha256: str | None = None,
    prefix: str | None = None,
    size: int | None = None,
    limit: int | None = None,
    suffix: str = ".safetensors",
    mismatch: Any = None,
) -> Path:
    """Stream ``url`` into ``ZOO_CACHE_DIR/files/<its sha256><suffix>`` and return that path; the file must have
    ``size`` bytes and SHA-256 ``sha256`` (or one starting with ``prefix``), and at most ``size`` or ``limit`` bytes
    are read. ``mismatch(actual_sha)`` makes the error for another hash. Any failure is a :class:`WeightsError`
    (an :class:`IntegrityError` for a file that is not the one expected), and nothing is kept."""
    folder = cache.cache_dir() / "files"
    cap = size if size is not None else limit or MAX_DOWNLOAD
    digest, received = hashlib.sha256(), 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder)  # a killed download's (its process is gone)
        with (
            atomic_path(folder / f"download{suffix}", ".part", name=lambda: digest.hexdigest() + suffix) as tmp,
            _open(url, what) as response,
            open(tmp, "wb") as out,
        ):
            announced = response.headers.get("Content-Length", "")
            total = int(announced) if announced.isdigit() else None
            if total is not None and total > cap:
                raise IntegrityError(f"{url} announces {total:,} bytes for {what}, more than the {cap:,} expected")
            with progress(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=what) as bar:
                for block in iter(lambda: response.read(cache.CHUNK), b""):
                    received += len(block)
                    if received > cap:
                        raise IntegrityError(f"{url} sent more than the {cap:,} bytes expected of {what}: zoo stopped")
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            if total is not None and received != total:
                raise http.client.IncompleteRead(b"", total - received)
            actual = digest.hexdigest()
            if size is not None and received != size:
                raise IntegrityError(f"the file downloaded for {what} has {received:,} bytes instead of {size:,}")
            if (sha256 and actual != sha256) or (prefix and not actual.startswith(prefix)):
                raise (mismatch(actual) if mismatch else None) or IntegrityError(
                    f"the file downloaded for {what} has SHA-256 {actual}, not the {sha256 or prefix + '…'} it must "
                    "have: it is not the file expected. Nothing was cached."
                )
    except (http.client.IncompleteRead, ConnectionError) as e:
        raise IntegrityError(
            f"the download of {what} from {url} was cut off ({type(e).__name__}); nothing was cached", hint="try again"
        ) from None
    except OSError as e:
        if e.errno in _CACHE_ERRNOS:
            raise cache.cache_error(e, f"writing {what}") from None
        raise WeightsError(f"could not download {what} from {url}: {e}") from None
    path = folder / (actual + suffix)
    cache.mark(path, sha256=actual)
    return path


def how_to_get_it(name: str, entry: WeightsEntry | None = None) -> str:
    """What a user without network access can do to get the weights ``name``."""
    ways = [
        f"on a machine with network access run `zoo download {name}` and copy ZOO_CACHE_DIR here",
        "load a local safetensors file with create_model(..., checkpoint_path=PATH)",
    ]
    upstream, url = (str((entry.origin or {}).get(k, "")) for k in ("upstream", "url")) if entry else ("", "")
    if upstream.startswith("torchvision.models.") and url.endswith(".pth"):
        ways.append(
            f"convert torchvision's own file: `zoo convert torchvision {name.split('.')[0]} --weights "
            f"{upstream.rsplit('.', 1)[-1]} --file {url.rsplit('/', 1)[-1]}`"
        )
    return "; or ".join(ways)


def _offline(name: str, entry: WeightsEntry | None = None) -> OfflineError:
    """The one error for offline mode: the weights, where they would come from, and what to do."""
    flag = "HF_HUB_OFFLINE" if env_flag("HF_HUB_OFFLINE") else "ZOO_OFFLINE"
    where = f"; it would come from {manifest.describe_source(entry)}" if entry else ""
    return OfflineError(
        f"{name} is not in the local cache and offline mode is on ({flag}=1){where}", hint=how_to_get_it(name, entry)
    )


def _usable(path: Path | None, sha: str, size: int | None, name: str) -> Path | None:
    """``path`` if it holds the verified file; a file there that differs is said (and cannot serve offline)."""
    if path is None or not path.exists():
        return None
    problem = cache.check_file(path, sha, size)
    if problem is None:
        return path
    if cache.is_offline():
        raise IntegrityError(
            f"the cached file {path} of {name} {problem}, and offline mode is on so it cannot be fetched again",
            hint=how_to_get_it(name),
        )
    warnings.warn(f"the cached file {path} of {name} {problem}; downloading it again", stacklevel=5)
    return None


def _changed(name: str, where: str, pinned: str, now: str) -> IntegrityError:
    return IntegrityError(
        f"{where} changed upstream: {name} was pinned on this machine with SHA-256 {pinned}, and upstream now has "
        f"{now}. zoo does not use a file that differs from the one it verified; nothing was cached",
        hint=f"if the new file is legitimate, forget the pin with `zoo download {name} --unpin`",
    )


def hub_file(name: str, source: Source, sha: str | None, size: int | None, force: bool, network: bool) -> Path | None:
    """A Hub file: zoo's own (``sha`` from the manifest) or third-party (the Hub's SHA-256 on the first download,
    then this machine's pin). Without ``network``: the verified local file, or None."""
    repo, filename = str(source.repo_id), str(source.filename)
    key, what = f"hub:{repo}/{filename}", f"{name} ({repo}, {filename})"
    pin = None if sha else cache.read_pin(name, key)
    want, want_size = (sha, size) if sha else ((pin["sha256"], pin["size"]) if pin else (None, None))
    rev = pin["commit"] if pin else source.revision or "main"
    theirs = cache.hub_cached_file(repo, filename, rev) if not force else None  # huggingface_hub's (timm's) download
    if not force and want:
        if _usable(cache.file_path(want), want, want_size, name) is not None:
            return cache.file_path(want)
        if theirs is not None and cache.check_file(theirs, want, want_size) is None:
            return theirs
    if theirs is not None and not want and cache.is_offline():  # never pinned here: the file must hash to its blob name
        blob = Path(os.readlink(theirs)).name if theirs.is_symlink() else ""
        if cache.check_file(theirs, blob) is None:
            commit = theirs.parents[len(Path(filename).parts) - 1].name
            cache.write_pin(name, key, {"commit": commit, "sha256": blob, "size": theirs.stat().st_size})
            return theirs
    if not network:
        return None
    if cache.is_offline():
        raise _offline(name)
    commit, hub_sha, hub_size = hub_file_info(repo, filename, rev, what)
    if pin and commit != pin["commit"]:
        raise IntegrityError(f"the Hub answered for {what} with commit {commit}, not the pinned {pin['commit']}")
    if want is None and hub_sha is None:
        raise IntegrityError(f"the Hub reports no SHA-256 for {what} (not an LFS/Xet file): zoo cannot verify it")
    if want is not None and hub_sha is not None and hub_sha != want:
        if pin:
            raise _changed(name, f"{repo} ({filename} @ {commit})", want, hub_sha)
        raise IntegrityError(
            f"the Hub serves another file for {what} (SHA-256 {hub_sha}) than the manifest "
            f"describes ({want}); nothing was downloaded"
        )
    said = "the manifest describes" if sha else "this machine pinned" if pin else "the Hub announced"
    expected = want or str(hub_sha)
    path = download(
        hub_url(repo, filename, commit),
        f"{what} @ {commit[:12]}",
        sha256=expected,
        size=want_size or hub_size,
        mismatch=lambda actual: IntegrityError(
            f"the file downloaded for {what} has SHA-256 {actual}, not the {expected} {said}. Nothing was cached"
        ),
    )
    if not sha:
        cache.write_pin(name, key, {"commit": commit, "sha256": path.name[:64], "size": path.stat().st_size})
    return path


def _pth(name: str, source: Source, force: bool, network: bool) -> Path | None:
    """torchvision's ``.pth``: checked (this machine's pin, else the hash prefix in its name), converted once to
    safetensors; torchvision's own download of it serves before the network."""
    url, key = str(source.url), f"url:{source.url}"
    pin, prefix = cache.read_pin(name, key), manifest.hash_prefix(str(source.url))
    if not force and pin:
        converted = pin["converted_sha256"]
        done = _usable(cache.file_path(converted), converted, pin.get("converted_size"), name)
        if done is not None:
            return done
    local = None if force else cache.torchvision_cache_file(url)
    if local is not None:
        sha = cache.sha256_file(local)
        if sha == (pin["sha256"] if pin else sha) and sha.startswith(prefix or ""):
            return _convert_pth(name, key, local, sha, f"{local} (torchvision's cache)")
        warnings.warn(f"ignoring {local}: its SHA-256 {sha} is not torchvision's file's", stacklevel=4)
    if not network:
        return None
    if cache.is_offline():
        raise _offline(name)
    pth = download(
        url,
        name,
        sha256=pin["sha256"] if pin else None,
        prefix=prefix,
        suffix=".pth",
        mismatch=lambda actual: _changed(name, url, pin["sha256"], actual) if pin else None,
    )
    try:
        return _convert_pth(name, key, pth, pth.name[:64], url)
    finally:
        pth.unlink(missing_ok=True)


def _convert_pth(name: str, key: str, pth: Path, sha: str, where: str) -> Path:
    try:
        state = read_pickle_checkpoint(pth)  # weights_only: tensors and containers, never code
    except WeightsFileError as e:
        raise IntegrityError(f"the file for {name} from {where} was refused: {e}. Nothing was cached.") from None
    # Named as a temporary file of this process (cleaned if it dies), and the URL as the source wherever the .pth
    # came from: the same .pth always gives the same bytes.
    temp = cache.cache_dir() / "files" / f".converting.{os.getpid()}.0.tmp"
    try:
        saved = save_weights(state, temp, {"source": key.removeprefix("url:")})
    except OSError as e:  # a full or read-only cache, said as such
        raise cache.cache_error(e, f"converting {where}") from None
    path = cache.file_path(saved.sha256)
    os.replace(saved.path, path)
    cache.mark(path, sha256=saved.sha256)
    record = {"sha256": sha, "size": pth.stat().st_size, "converted_sha256": saved.sha256, "converted_size": saved.size}
    cache.write_pin(name, key, record)
    return path


class Fetched(NamedTuple):
    """A verified local file and the (resolved) source that provided it (None: converted locally)."""

    path: Path
    source: Source | None


def _local(name: str, entry: WeightsEntry, sources: tuple[Source, ...]) -> Fetched | None:
    """A bundled file or a ``zoo convert`` result, checked; None when neither serves."""
    if sources[0].type == "bundled":
        path = weights_dir() / str(sources[0].path)
        problem = cache.check_file(path, str(entry.sha256), entry.size) if entry.published else "is not published"
        if problem:
            raise IntegrityError(
                f"the bundled file of {name}, {path}, {problem}",
                hint="restore it from the repository (git checkout) or reinstall zoo",
            )
        return Fetched(path, sources[0])
    path = cache.converted_path(name)
    if not path.is_file():
        return None
    recorded = cache.read_pin(name, "converted") if entry.third_party else {"sha256": entry.sha256, "size": entry.size}
    if not recorded or not recorded["sha256"]:
        raise IntegrityError(
            f"{path} was converted locally, but no SHA-256 was recorded for {name} to check it against",
            hint="run `zoo convert` again so that it records one",
        )
    problem = cache.check_file(path, recorded["sha256"], recorded.get("size"))
    if problem is None:
        return Fetched(path, None)
    warnings.warn(f"ignoring the locally converted {path}: it {problem}", stacklevel=4)
    return None


def _from(name: str, entry: WeightsEntry, raw: Source, force: bool, network: bool) -> Path | None:
    """The file of one source of ``entry`` (as the manifest writes it: ``{org}`` marks this project's own)."""
    source = raw.resolved()
    if source.type == "url":
        return _pth(name, source, force, network)
    own = not raw.third_party
    return hub_file(name, source, entry.sha256 if own else None, entry.size if own else None, force, network)


def fetch_file(name: str, force: bool = False, entry: WeightsEntry | None = None) -> Fetched:
    """A verified local file of the manifest entry ``name`` and the source that served it (None: converted here):
    a bundled or converted file in place, else a verified copy from any source already here (no network, no lock),
    else the sources in order under the entry's lock; an unreachable source passes to the next with a warning, a
    file failing verification stops everything. ``force`` downloads again."""
    entry = entry or manifest.get_entry(*name.split(".", 1))
    sources = tuple(s.resolved() for s in entry.sources)
    local = None if force and sources[0].type != "bundled" else _local(name, entry, sources)
    if local is not None:
        return local
    if not entry.published:  # no file to fetch: what works today
        command = str((entry.origin or {}).get("command") or "")  # a training command converts nothing
        ways = ["load a file with checkpoint_path=PATH, or a folder zoo publish wrote with local-dir:FOLDER"]
        if command.startswith("zoo convert"):
            ways.insert(0, f"convert it with `{command}` (into {cache.converted_path(name)})")
        raise NotPublishedError(
            f"{name} is listed in the manifest but its file has not been published yet (it is to be hosted at "
            f"{manifest.describe_source(entry)})",
            hint="; or ".join(ways),
        )
    for raw, source in zip(entry.sources, sources, strict=True) if not force else ():
        path = _from(name, entry, raw, False, network=False)
        if path is not None:
            return Fetched(path, source)
    failures: list[tuple[Source, WeightsError]] = []
    with cache.entry_lock(manifest.check_name(name)):
        for raw, source in zip(entry.sources, sources, strict=True):
            try:
                path = _from(name, entry, raw, force, network=True)
            except IntegrityError:
                raise
            except WeightsError as e:
                failures.append((source, e))
                continue
            if failures:
                tried = "; ".join(f"{s.describe()}: {e.args[0]}" for s, e in failures)
                warnings.warn(f"{name} came from {source.describe()} after {tried}", stacklevel=3)
            return Fetched(path, source)  # type: ignore[arg-type]
    if all(isinstance(e, OfflineError) for _, e in failures):
        raise _offline(name, entry)
    lines = "\n".join(f"  {i}. {s.describe()}: {e.args[0]}" for i, (s, e) in enumerate(failures, 1))
    hints = list(dict.fromkeys([*(e.hint for _, e in failures if e.hint), how_to_get_it(name, entry)]))
    if len(failures) == 1:
        raise type(failures[0][1])(failures[0][1].args[0], hint="; ".join(hints))
    raise WeightsError(
        f"could not fetch {name} from any of its {len(failures)} sources:\n{lines}", hint="; ".join(hints)
    )


def fetch(name: str, force: bool = False) -> Path:
    """A local, verified path to the file of the manifest entry ``name``, downloaded if needed."""
    return fetch_file(name, force).path


def cached_state(name: str) -> str:
    """Where ``name``'s file is on this machine, without network access."""
    entry = manifest.get_entry(*name.split(".", 1))
    try:
        local = _local(name, entry, tuple(s.resolved() for s in entry.sources))
        found = local or next(
            (Fetched(p, s) for s in entry.sources if (p := _from(name, entry, s, False, False))), None
        )
    except WeightsError as e:
        return f"not usable: {e.args[0]}"
    if found is None:
        return "not cached" if entry.published else "not published yet"
    how = "converted locally" if found.source is None else "bundled" if found.source.type == "bundled" else "cached"
    return f"{how} at {found.path} (verified)"


class FolderWeights(NamedTuple):
    """What ``local-dir:PATH`` or ``hf-hub:ORG/NAME`` stands for: the architecture, its builder arguments, the
    preprocessing from ``config.json`` and (with ``pretrained``) the weights file."""

    arch: str
    model_args: dict[str, Any]
    pretrained_cfg: dict[str, Any]
    weights: Path | None


def read_config(data: bytes, where: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(architecture, model_args, pretrained_cfg) of a timm-layout ``config.json``, each checked: it only chooses a
    registered architecture and preprocessing."""
    from zoo.models.cfg import check_preprocessing
    from zoo.registry import is_model

    try:
        config = parse_json(data)
    except ValueError as e:
        raise WeightsFileError(f"{where} is not valid JSON ({e})") from None
    with reported(where, WeightsFileError):
        config = json_object("config", config)
        arch = config.get("architecture")
        if not isinstance(arch, str) or not is_model(arch):
            raise Invalid("architecture", arch, "must be a registered zoo model (`zoo list`)")
        model_args = json_object("model_args", config.get("model_args") or {})
        cfg = json_object("pretrained_cfg", config.get("pretrained_cfg") or {})
    keep = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes", "label_names")
    cfg = {k: v for k, v in {"num_classes": config.get("num_classes"), **cfg}.items() if k in keep and v is not None}
    if config.get("label_names"):
        cfg["label_names"] = config["label_names"]
    checked = check_preprocessing(cfg, where, WeightsFileError)
    args = {k: v for k, v in model_args.items() if k not in ("num_classes", "in_chans")}
    if checked.get("num_classes") is not None:
        args["num_classes"] = checked["num_classes"]
    if checked.get("input_size"):
        args["in_chans"] = checked["input_size"][0]
    return arch, args, checked


def _hub_pin_name(repo: str) -> str:
    return "hf_hub." + "".join(c if c.isalnum() or c in "_-" else "-" for c in repo)[:110]


def _hf_hub_config(repo: str, rev: str) -> bytes:
    """A Hub repo's config.json (a git file: no SHA-256 on the Hub), pinned on this machine by its commit."""
    name, key, what = _hub_pin_name(repo), f"hub:{repo}/{CONFIG}", f"{CONFIG} of {repo}"
    pin = cache.read_pin(name, key)
    if pin and cache.check_file(cache.file_path(pin["sha256"], ".json"), pin["sha256"]) is None:
        return cache.file_path(pin["sha256"], ".json").read_bytes()
    cached = cache.hub_cached_file(repo, CONFIG, rev)
    if cached is not None:
        return read_bounded(cached, MAX_CONFIG_BYTES, CONFIG)
    if cache.is_offline():
        raise OfflineError(f"the {CONFIG} of hf-hub:{repo} is not cached, and offline mode is on")
    commit, _, size = hub_file_info(repo, CONFIG, rev, what)
    path = download(
        hub_url(repo, CONFIG, commit), what, limit=min(size or MAX_CONFIG_BYTES, MAX_CONFIG_BYTES), suffix=".json"
    )
    cache.write_pin(name, key, {"commit": commit, "sha256": path.name[:64], "size": path.stat().st_size})
    return path.read_bytes()


def resolve_folder(name: str, pretrained: bool) -> FolderWeights:
    """The architecture, arguments, preprocessing and (``pretrained``) weights file a folder name stands for."""
    kind, _, spec = name.partition(":")
    if kind == "local-dir":
        try:
            folder = Path(spec).expanduser()
        except RuntimeError:  # ~nouser: no such home folder
            raise WeightsFileError(f"{name}: {spec} names no folder") from None
        if not folder.is_dir():
            raise WeightsFileError(f"{name}: {folder} is not a folder")
        hint = f"a folder in timm's layout holds {CONFIG} and {WEIGHTS} (what `zoo publish` writes)"
        if not (folder / CONFIG).exists():
            raise WeightsFileError(f"{name} has no {CONFIG}", hint=hint)
        with reported(name, WeightsFileError, hint=hint):
            data = read_bounded(folder / CONFIG, MAX_CONFIG_BYTES, CONFIG)
        weights = folder / WEIGHTS if pretrained else None
        if weights is not None and not weights.is_file():
            raise WeightsFileError(f"{name}: {folder} has no {WEIGHTS}")
        return FolderWeights(*read_config(data, str(folder / CONFIG)), weights)
    repo, _, rev = spec.partition("@")
    with reported(name, ArgumentValueError, hint="give a Hub repo as hf-hub:ORG/NAME (optionally @REVISION)"):
        repo_id("repo", repo)
        revision("revision", rev or "main")
    arch, args, cfg = read_config(_hf_hub_config(repo, rev or "main"), f"{CONFIG} of hf-hub:{repo}")
    weights = None
    if pretrained:
        pin_name = _hub_pin_name(repo)
        source = Source(type="hub", repo_id=repo, filename=WEIGHTS, revision=rev or "main")
        with cache.entry_lock(pin_name):
            try:
                weights = hub_file(pin_name, source, None, None, False, network=True)
            except WeightsError as e:
                raise type(e)(f"hf-hub:{repo}: {e.args[0]}", hint=e.hint) from None
    return FolderWeights(arch, args, cfg, weights)
