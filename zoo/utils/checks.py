"""The rules a value from a user or a file must follow, each written once.

Every value zoo takes from outside (a manifest entry, a weights file's header, a run's files, a recipe, a
command-line option, a builder argument) is checked by one of these functions. Each returns the value, or
raises :class:`Invalid` naming the field, the offending value and what would be valid; the typed records
(``WeightsEntry``, ``WeightsMetadata``, ``Recipe``, a run's files) call them in ``__post_init__``, and
:func:`record` builds one from a JSON object, naming the file in the one error line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from zoo.errors import ArgumentValueError, ZooError

# What a file or an option may ask for: a header is untrusted input, and a 10^6-pixel side, a 10^4-channel mean or
# a 10^9-class head would make zoo allocate what no image classifier needs.
MAX_INPUT_SIDE = 4096
MAX_RESIZE_SIDE = 8192  # the side an image is resized to before the centre crop: input side / crop_pct
MAX_CHANNELS = 1024  # multispectral inputs run to a few hundred bands
MAX_NUM_CLASSES = 1_000_000  # 46 times ImageNet-21k, yet a head a machine can hold
MIN_STD = 1e-6  # a smaller std overflows float32 once an image is divided by it
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")

T = TypeVar("T")


def shorten(text: str, limit: int = 80) -> str:
    """``text`` whole when short, else its first ``limit`` characters and its length: what an error quotes can
    come from a hostile file (a megabyte of ``[[[[``), and the error stays one line."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


class Invalid(ArgumentValueError):
    """A value outside the values it may take; ``name`` and ``value`` are the field and what it was given."""

    def __init__(self, name: str, value: Any, must: str, hint: str | None = None) -> None:
        super().__init__(f"{name}={shorten(repr(value))}: {must}", hint=hint)
        self.name, self.value = name, value


@contextmanager
def reported(where: str, error: type[ZooError] = ArgumentValueError, hint: str | None = None) -> Iterator[None]:
    """Re-raise an :class:`Invalid` inside the block as ``error`` whose message starts with ``where`` (the file)."""
    try:
        yield
    except Invalid as e:
        raised = error(f"{where}: {e.args[0]}", hint=hint or e.hint)
        raised.name, raised.value = e.name, e.value  # type: ignore[attr-defined]
        raise raised from None


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range(low: float | None, high: float | None, below: float | None) -> str:
    def show(v: float) -> str:
        return str(v) if is_int(v) else f"{v:g}"

    if high is not None:
        return f"from {show(low)} to {show(high)}" if low is not None else f"at most {show(high)}"
    if below is not None:
        return f"from {show(low)} up to, not including, {show(below)}" if low is not None else f"below {show(below)}"
    return f"at least {show(low)}" if low is not None else "any"


def int_in(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An int (not a bool) in ``[low, high]``."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise Invalid(name, value, f"must be an int {_range(low, high, None)}")
    return value


def number_in(
    name: str, value: Any, low: float | None = None, high: float | None = None, *, below: float | None = None
) -> float:
    """A finite number (not a bool) in ``[low, high]`` or ``[low, below)``."""
    if (
        not is_number(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
        or (below is not None and value >= below)
    ):
        raise Invalid(name, value, f"must be a finite number {_range(low, high, below)}")
    return value


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (compared by type too: ``True`` is not ``1``)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise Invalid(name, value, f"must be one of {', '.join(map(repr, choices))}")
    return value


def text(name: str, value: Any, limit: int = 4096) -> str:
    """A string of at most ``limit`` characters."""
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(name, value, f"must be a string of at most {limit:,} characters")
    return value


def json_object(name: str, value: Any) -> dict[str, Any]:
    """A JSON object (a mapping with string keys), as a new dict."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise Invalid(name, value, "must be an object with string keys")
    return dict(value)


def is_hex(value: Any, length: int) -> bool:
    """Whether ``value`` is ``length`` lower-case hex digits (a SHA-256 has 64, a git commit 40)."""
    return isinstance(value, str) and len(value) == length and not set(value) - set("0123456789abcdef")


def sha256(name: str, value: Any) -> str:
    """A full SHA-256: 64 lower-case hex digits."""
    if not is_hex(value, 64):
        raise Invalid(name, value, "must be a SHA-256 (64 lower-case hex digits)")
    return value


def relative_path(name: str, value: Any) -> str:
    """A relative path of plain parts that stays inside the folder it is joined to (no ``..``, ``\\``, ``C:``)."""
    parts = PurePosixPath(value).parts if isinstance(value, str) else ()
    if not parts or "\\" in value or value.startswith("/") or ":" in parts[0] or any(p in (".", "..") for p in parts):
        raise Invalid(name, value, "must be a relative path inside its folder (no '/', '..' or drive at its start)")
    return value


def repo_id(name: str, value: Any, org_placeholder: bool = False) -> str:
    """A Hub repo id, ``org/name``; with ``org_placeholder`` the org may be ``{org}`` (the manifest's hub_org)."""
    parts = value.split("/") if isinstance(value, str) else []
    org_ok = len(parts) == 2 and ((org_placeholder and parts[0] == "{org}") or _REPO_PART.fullmatch(parts[0]))
    if not org_ok or not _REPO_PART.fullmatch(parts[1]) or ".." in value:
        raise Invalid(name, value, "must be a Hub repo id 'org/name' (letters, digits, '_', '-', '.')")
    return value


def revision(name: str, value: Any) -> str:
    """A Hub branch, tag or commit: plain path parts, never a path that leaves the repo."""
    try:
        return relative_path(name, value)
    except Invalid:
        raise Invalid(name, value, "must be a branch, tag or commit") from None


def input_size(name: str, value: Any) -> tuple[int, int, int]:
    """[channels, height, width] of positive ints, within ``MAX_CHANNELS`` and ``MAX_INPUT_SIDE``."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(is_int(v) and v > 0 for v in value)
    if not ok or value[0] > MAX_CHANNELS or max(value[1:]) > MAX_INPUT_SIDE:
        raise Invalid(
            name, value, f"must be [channels, height, width]: at most {MAX_CHANNELS} channels, sides of 1 to "
            f"{MAX_INPUT_SIDE} pixels",
        )  # fmt: skip
    return tuple(value)  # type: ignore[return-value]


def regular_file(name: str, path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a regular file (links followed): a FIFO would hang a reader, a device feed it for ever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    if not stat.S_ISREG(mode):
        kind = "folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "device or special file"
        raise Invalid(name, str(path), f"is a {kind}, not a regular file")
    return Path(path)


def read_bounded(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refused (never read) when it is a FIFO, a device or a folder, or
    larger than ``limit`` bytes: a file named by a user or by another file is untrusted."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens without waiting for a writer
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Invalid(what, str(path), "must be a regular file (not a folder, FIFO or device)")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Invalid(what, str(path), f"has more than the {limit:,} bytes zoo reads")
    return data


def record(
    cls: type[T], data: Any, where: str, error: type[ZooError] = ArgumentValueError, hint: str | None = None
) -> T:
    """A ``cls`` dataclass from the JSON object ``data``: unknown or missing fields, and any value its
    ``__post_init__`` checks refuse, are one ``error`` naming ``where`` and the field (with ``hint``)."""
    with reported(where, error, hint):
        return cls(**record_fields(cls, data))


def record_fields(cls: type, data: Any, name: str = "the record") -> dict[str, Any]:
    """The JSON object ``data`` as the fields of the dataclass ``cls``: none unknown, none required missing."""
    data = json_object(name, data)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise Invalid(unknown[0], data[unknown[0]], f"is not a field; the fields are {', '.join(names)}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise Invalid(f.name, None, "is required")
    return data
