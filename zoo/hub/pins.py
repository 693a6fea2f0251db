"""Pins: what this machine verified of a third-party file, kept in ``ZOO_CACHE_DIR/pins/<arch.tag>.json``.

One record per source (keyed by repo and file, or URL, whatever the revision): the Hub commit the file was
fetched at, its SHA-256 and size, and for a converted pickle the SHA-256 of the safetensors file made from
it. Later loads are checked against the record with the cheap verified marker; a refetch goes to the
pinned commit, and a file that differs from the record there is refused.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.hub import manifest
from zoo.hub.entry import COMMIT_RE, SHA256_RE, Source
from zoo.hub.verify import cache_dir
from zoo.utils.files import parse_json, write_text_atomic

__all__ = ["converted_record", "read_pin", "record_converted", "remove_pins", "write_pin"]


def _source_key(source: Source) -> str:
    # Independent of the revision: a pin made at "main" holds when the source is later asked for again.
    return f"hub:{source.repo_id}/{source.filename}" if source.type == "hub" else f"url:{source.url}"


def _pin_path(name: str) -> Path:
    return cache_dir() / "pins" / f"{manifest.check_name(name)}.json"


def _read_pins(name: str) -> dict[str, Any]:
    try:
        data = parse_json(_pin_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_pins(name: str, pins: dict[str, Any]) -> None:
    write_text_atomic(_pin_path(name), json.dumps(pins, indent=1, sort_keys=True) + "\n")


@contextmanager
def _pins_locked(name: str) -> Iterator[None]:
    """Hold the lock of ``name``'s pin file for a read-modify-write, so that two processes recording pins of
    two sources (or one converting while another downloads) do not lose each other's record. It is a lock of
    its own, not the entry's fetch lock, which the fetch that writes a pin already holds."""
    from filelock import FileLock

    lock_path = cache_dir() / "locks" / f"{manifest.check_name(name)}.pins.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        yield


def read_pin(name: str, source: Source) -> dict[str, Any] | None:
    """What this machine verified of ``source`` for ``name``: commit (Hub), sha256, size; None if nothing.

    A record that is not well formed counts as none (the file is verified again against upstream).
    """
    record = _read_pins(name).get(_source_key(source))
    if not isinstance(record, dict) or not SHA256_RE.fullmatch(str(record.get("sha256"))):
        return None
    if source.type == "hub" and not COMMIT_RE.fullmatch(str(record.get("commit"))):
        return None
    if source.format == "torch" and not SHA256_RE.fullmatch(str(record.get("converted_sha256"))):
        return None
    return record


def write_pin(name: str, source: Source, record: dict[str, Any]) -> None:
    """Record what was verified of ``source`` for ``name`` (best effort: a read-only cache only warns)."""
    try:
        with _pins_locked(name):
            pins = _read_pins(name)
            pins[_source_key(source)] = record
            _write_pins(name, pins)
    except OSError as e:  # the file was verified; only the pin for next time is lost
        warnings.warn(f"could not record the pin of {name} in {_pin_path(name)}: {e.strerror}", stacklevel=4)


def record_converted(name: str, sha256: str, size: int) -> None:
    """Remember the SHA-256 of a file ``zoo convert`` made for a third-party entry (its manifest entry
    describes upstream's files, so the local conversion is pinned here instead)."""
    with _pins_locked(name):
        pins = _read_pins(name)
        pins["converted"] = {"sha256": sha256, "size": size}
        _write_pins(name, pins)


def converted_record(name: str) -> tuple[str, int | None] | None:
    """(SHA-256, size) recorded by :func:`record_converted` for ``name``, if any."""
    record = _read_pins(name).get("converted")
    if not isinstance(record, dict) or not SHA256_RE.fullmatch(str(record.get("sha256"))):
        return None
    size = record.get("size")
    return record["sha256"], size if isinstance(size, int) else None


def remove_pins(name: str) -> bool:
    """Forget what this machine pinned for ``name`` (``zoo download --unpin``); True if there was a pin."""
    with _pins_locked(name):
        pins = _read_pins(name)
        kept = {k: v for k, v in pins.items() if k == "converted"}  # a local conversion is not upstream's file
        if len(kept) == len(pins):
            return False
        if kept:
            _write_pins(name, kept)
        else:
            _pin_path(name).unlink(missing_ok=True)
        return True
