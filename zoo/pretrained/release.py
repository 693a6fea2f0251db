"""The maintainer's release tool, ``zoo pin``: fix every third-party file of the manifest by commit and SHA-256.

A maintainer runs it with network access. Each Hub source is asked for the commit its revision resolves
to and the file's SHA-256 there (the resolve request's ``X-Repo-Commit`` and ``X-Linked-Etag``); each
torchvision URL is downloaded once and hashed (its name's hash prefix must match). Both go into the
source (``revision`` becomes the commit), so that a released manifest names exactly the files it was
checked with, and every user verifies against them rather than against what upstream says on the day.
A source that is already pinned is checked again at its commit: the same file, or an error.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from zoo.errors import IntegrityError
from zoo.pretrained import manifest
from zoo.pretrained.cache import cache_dir
from zoo.pretrained.fetch import download, hub_file_info
from zoo.pretrained.manifest import Source, WeightsEntry

__all__ = ["pin_entry"]


def _pin_hub(name: str, raw: Source) -> Source:
    source = manifest.resolve(raw)
    what = f"{name} ({source.repo_id}, {source.filename} @ {source.revision})"
    commit, sha, size = hub_file_info(source, what)
    if sha is None:
        raise IntegrityError(f"the Hub reports no SHA-256 for {what}: the file is not stored in LFS/Xet")
    if raw.pinned and sha != raw.sha256:
        raise IntegrityError(
            f"{what} is pinned with SHA-256 {raw.sha256}, but the Hub now reports {sha} at that commit: the "
            "pinned file is not what the Hub serves; the manifest was not changed"
        )
    return replace(raw, revision=commit, sha256=sha, size=size)


def _pin_url(name: str, raw: Source) -> Source:
    folder = cache_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    try:
        sha, size = download(name, str(raw.url), Path(tmp), folder / f"{name}.pth")
    finally:
        Path(tmp).unlink(missing_ok=True)
    expected = raw.sha256 or raw.hash_prefix or ""
    if not sha.startswith(expected):
        raise IntegrityError(f"{raw.url} has SHA-256 {sha}, which does not match the {expected} it is pinned with")
    return replace(raw, sha256=sha, size=size)


def pin_entry(name: str, path: str | os.PathLike[str] | None = None, urls: bool = True) -> WeightsEntry:
    """Pin every third-party source of the manifest entry ``name`` and write the manifest; returns the entry.

    ``urls=False`` leaves torchvision URL sources as they are (pinning them downloads each file).
    Sources of this project's own files (bundled, ``{org}``) already carry their SHA-256 in the entry.
    """
    arch, _, tag = name.partition(".")
    entry = manifest.get_entry(arch, tag)
    pinned = []
    for raw in entry.sources:
        if raw.third_party and raw.type == "hub":
            raw = _pin_hub(name, raw)
        elif raw.third_party and urls:
            raw = _pin_url(name, raw)
        pinned.append(raw)
    fields = {"source": pinned[0].to_dict()}
    if entry.fallbacks:
        fields["fallbacks"] = [s.to_dict() for s in pinned[1:]]
    return manifest.update_entry(name, fields, path=path, merge=True)
