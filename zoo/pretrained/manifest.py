"""The weights manifest (``weights/manifest.json``): one typed, validated entry per ``arch.tag``.

The manifest is the single description of every set of pretrained weights: where the file lives, its
SHA-256 and size, and the preprocessing, labels, metrics, licence and provenance that go with it. The
registry, ``zoo info``, the docs tables and the loader all read it; nothing repeats it by hand.

:class:`WeightsEntry` and its :class:`Source` are the one definition of an entry: its fields, their order
in the file, their types and what a valid value is. They are :class:`Record` dataclasses, whose validation
is derived from the field annotations and each field's ``must`` text (``tuple[int, int, int]`` is a JSON
list of three ints, ``Literal[...]`` one of the listed strings, ``X | None`` may be null or absent), then
``_check`` for what involves several fields. Constructing an entry validates it, so code that holds a
``WeightsEntry`` holds a valid one. An entry as it is written::

    "resnet50.tv2_in1k": {
      "status": "published",                 # or "unpublished": listed, but no file to fetch yet
      "default": true,                       # the weights `pretrained=True` picks for a bare "resnet50"
      "source": {"type": "hub", "repo_id": "{org}/resnet50.tv2_in1k", "filename": "model.safetensors",
                 "revision": "main"},        # or {"type": "url", "url": ...} / {"type": "bundled", "path": ...}
      "sha256": "...", "size": 102530333,
      "num_classes": 1000, "label_names": "imagenet_classes.json",
      "input_size": [3, 224, 224], "interpolation": "bilinear", "crop_pct": 0.9655, "mean": [...], "std": [...],
      "dataset": "imagenet-1k", "license": "bsd-3-clause",
      "metrics": {"top1": 80.858, "top5": 95.434, "command": "...", "measured_by": "torchvision"},
      "origin": {"command": "zoo convert torchvision resnet50 --weights IMAGENET1K_V2", ...}
    }

``{org}`` in a Hub repo id is replaced by ``ZOO_HUB_ORG`` (default: the manifest's ``hub_org``).
:func:`get_entry` and :func:`entries_for_arch` return ``WeightsEntry`` objects; :func:`load_manifest`
is the file's JSON as it is, for tools that rewrite it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields, is_dataclass, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from zoo.errors import ManifestError
from zoo.models.cfg import Interpolation, check_preprocessing
from zoo.utils import natural_key
from zoo.utils.files import parse_json, write_text_atomic

__all__ = [
    "COMMIT_RE",
    "DEFAULT_HUB_ORG",
    "FileFormat",
    "MAX_NAME_LENGTH",
    "Record",
    "SCHEMA",
    "SHA256_RE",
    "SOURCE_TYPES",
    "STATUSES",
    "Source",
    "SourceType",
    "Status",
    "WeightsEntry",
    "bundled_path",
    "check_name",
    "checked_field",
    "default_tag",
    "describe",
    "describe_source",
    "dumps",
    "entries_for_arch",
    "fits_type",
    "get_entry",
    "hash_prefix",
    "hub_org",
    "label_names",
    "load_manifest",
    "manifest_path",
    "relative_path_problem",
    "resolve",
    "resolve_source",
    "resolve_sources",
    "update_entry",
    "validate_entry",
    "validate_manifest",
    "weight_names",
    "weights_dir",
    "write_manifest",
]


def checked_field(must: str | None = None, check: Callable[[Any], bool] | None = None, **kwargs: Any) -> Any:
    """A field that says what a valid value is (``must``, for the error) and how to check it beyond its type."""
    return field(metadata={"must": must, "check": check}, **kwargs)


def fits_type(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a type annotation (lists stand for tuples)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(fits_type(value, a) for a in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(fits_type(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    if isinstance(tp, type) and is_dataclass(tp):
        return isinstance(value, tp)
    raise TypeError(f"no check for the annotation {tp!r}")


def _describe(tp: Any) -> str:
    """The default ``must`` text of a field: its Literal's values."""
    literals = [a for a in (get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,))
                if get_origin(a) is Literal]  # fmt: skip
    return "one of " + ", ".join(v for lit in literals for v in get_args(lit)) if literals else f"a {tp!r}"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


class Record:
    """Validation for the dataclasses below, derived from their annotations and field metadata.

    Also their keyword-only ``__init__``, ``__repr__``, ``__eq__``/``__hash__`` and frozenness: the
    ``@dataclass`` options below generate none of them, because compiling generated methods from source
    took 2.5 ms of the first pretrained load in every process, more than reading the manifest.
    """

    def __init__(self, **kwargs: Any) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing required keyword argument {f.name!r}")
            object.__setattr__(self, f.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        self.__post_init__()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({shown})"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value, tp = getattr(self, f.name), hints[f.name]
            check = f.metadata.get("check")
            if not fits_type(value, tp) or (value is not None and check is not None and not check(value)):
                raise ManifestError(f"{f.name}={value!r} must be {f.metadata.get('must') or _describe(tp)}")
            if isinstance(value, list):  # frozen: JSON lists become tuples
                object.__setattr__(self, f.name, tuple(value))
            elif isinstance(value, Mapping):  # a copy: the caller's (or the cached manifest's) stays as it is
                object.__setattr__(self, f.name, copy.deepcopy(dict(value)))
        self._check()

    def _check(self) -> None:
        """Checks that involve several fields."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields in the order they are written to the manifest."""
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def required_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)  # type: ignore[arg-type]

    @classmethod
    def _kwargs(cls, data: Mapping[str, Any], what: str) -> dict[str, Any]:
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            known = ", ".join(cls.field_names())
            raise ManifestError(f"{what}unknown field(s) {', '.join(unknown)}; known fields: {known}")
        for name in cls.required_fields():
            if name not in data:
                raise ManifestError(f"{what}missing required field {name!r}")
        return dict(data)

    def _json(self, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if value is None and name not in keep_none:
                continue
            if isinstance(value, Record):
                value = value._json()
            elif isinstance(value, dict):
                value = copy.deepcopy(value)  # the caller may edit what it gets; the entry stays as it is
            if isinstance(value, tuple):
                value = [v._json() if isinstance(v, Record) else v for v in value]
            out[name] = value
        return out


Status = Literal["published", "unpublished"]
SourceType = Literal["hub", "url", "bundled"]
FileFormat = Literal["safetensors", "torch"]
STATUSES: tuple[str, ...] = get_args(Status)
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
_REPO_PART_RE = re.compile(r"[A-Za-z0-9_.{}\-]+")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
# torchvision's file names end in the first hex digits of the file's SHA-256: resnet50-11ad3fa6.pth
_HASH_PREFIX_RE = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin")


def hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix a torchvision-style file name carries (``.../resnet50-11ad3fa6.pth``), if any."""
    match = _HASH_PREFIX_RE.search(url.split("?")[0].rsplit("/", 1)[-1])
    return match.group(1) if match else None


def relative_path_problem(path: Any) -> str | None:
    """None if ``path`` is a relative path that stays inside its folder, else what is wrong with it."""
    if not isinstance(path, str) or not path:
        return "must be a non-empty relative path"
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or Path(path).is_absolute() or (parts and ":" in parts[0]):
        return "must be relative to weights/, not absolute"
    if ".." in parts:
        return "must stay inside weights/ (no '..')"
    return None


@dataclass(init=False, repr=False, eq=False, kw_only=True)  # Record provides these, frozen included
class Source(Record):
    """Where an entry's file comes from: a Hub repo file, an http(s) URL or a file bundled in ``weights/``.

    ``sha256`` and ``size`` pin a third-party file (``zoo pin`` writes them, with the Hub commit as
    ``revision``); zoo's own files keep theirs in the entry. A ``url`` source of ``format`` ``torch`` is a
    pickle (torchvision's ``.pth``): read with ``torch.load(weights_only=True)`` and converted once.
    """

    type: SourceType
    repo_id: str | None = checked_field("'org/name' (org may be '{org}')", default=None)  # hub
    filename: str | None = checked_field("a file name", default=None)  # hub
    revision: str | None = checked_field("a branch, tag or commit", default=None)  # hub; absent means "main"
    url: str | None = checked_field("an http(s) URL", default=None)  # url
    format: FileFormat | None = None  # url; absent means "safetensors"
    path: str | None = checked_field("a path relative to weights/", default=None)  # bundled
    sha256: str | None = checked_field(
        "the full 64-digit lower-case hex SHA-256 of the file", check=lambda v: bool(SHA256_RE.fullmatch(v)),
        default=None,
    )  # fmt: skip
    size: int | None = checked_field("the file's size in bytes (a positive int)", check=lambda v: v > 0, default=None)

    def _check(self) -> None:
        if self.type == "hub":
            repo = self.repo_id
            parts = repo.split("/") if isinstance(repo, str) else []
            if len(parts) != 2 or not all(_REPO_PART_RE.fullmatch(p) and p not in (".", "..") for p in parts):
                raise ManifestError(f"hub source needs repo_id 'org/name' (org may be '{{org}}'), got {repo!r}")
            if not (self.filename or "").endswith(".safetensors") or relative_path_problem(self.filename):
                raise ManifestError(
                    f"hub source needs a relative filename ending in .safetensors, got {self.filename!r}"
                )
            if self.revision is not None and (self.revision.startswith("/") or ".." in self.revision.split("/")):
                raise ManifestError(f"hub source revision {self.revision!r} must be a branch, tag or commit")
        elif self.type == "url":
            url = self.url
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise ManifestError(f"url source needs an http(s) URL, got {url!r}")
            file = url.split("?")[0]
            if self.format == "torch":
                if not file.endswith(_PICKLE_SUFFIXES):
                    raise ManifestError(f"url {url!r} of format torch must end in {', '.join(_PICKLE_SUFFIXES)}")
                if self.sha256 is None and self.hash_prefix is None:
                    raise ManifestError(
                        f"url {url!r} is a pickle file: it needs a pinned sha256, or a file name ending in the "
                        "first 8+ hex digits of its SHA-256 (torchvision's 'resnet50-11ad3fa6.pth')"
                    )
            elif not file.endswith(".safetensors"):
                raise ManifestError(
                    f"url {url!r} must point at a .safetensors file (a torchvision .pth needs format 'torch')"
                )
        else:
            path = self.path or ""
            if not path.endswith(".safetensors") or relative_path_problem(path):
                raise ManifestError(f"bundled source needs a .safetensors path relative to weights/, got {self.path!r}")
        if self.format is not None and self.type != "url":
            raise ManifestError(f"format is for url sources, not {self.type} sources")

    @property
    def third_party(self) -> bool:
        """True for a file this project does not publish: a Hub repo outside ``{org}``, or a pickle URL."""
        if self.type == "hub":
            return not str(self.repo_id).startswith("{org}/")
        return self.type == "url" and self.format == "torch"

    @property
    def hash_prefix(self) -> str | None:
        """The SHA-256 prefix a torchvision-style file name carries (``resnet50-11ad3fa6.pth``), if any."""
        return hash_prefix(self.url) if self.type == "url" and isinstance(self.url, str) else None

    @property
    def pinned(self) -> bool:
        """True when the file is fixed by the manifest: its SHA-256, and for the Hub a commit as revision."""
        if self.type == "hub":
            return self.sha256 is not None and bool(COMMIT_RE.fullmatch(self.revision or ""))
        return self.sha256 is not None

    @classmethod
    def from_dict(cls, data: Any) -> Source:
        """A source from its manifest object (a ManifestError naming what is wrong)."""
        if not isinstance(data, Mapping) or data.get("type") not in SOURCE_TYPES:
            raise ManifestError(f"source={data!r} must be an object whose type is one of {', '.join(SOURCE_TYPES)}")
        return cls(**cls._kwargs(data, "source has "))

    def to_dict(self) -> dict[str, Any]:
        """The manifest object: only the fields that are set."""
        return self._json()


def _check_metrics(metrics: dict[str, Any]) -> None:
    for key in ("top1", "top5"):
        value = metrics.get(key)
        if value is not None and not fits_type(value, float):
            raise ManifestError(f"metrics.{key}={value!r} must be a number (percent) or null")
    if any(metrics.get(k) is not None for k in ("top1", "top5")) and not metrics.get("command"):
        raise ManifestError("metrics need the 'command' that measured them")


@dataclass(init=False, repr=False, eq=False, kw_only=True)  # Record provides these, frozen included
class WeightsEntry(Record):
    """One entry of the manifest: a set of weights, where its file is, and what goes with it.

    Field order is the order in ``weights/manifest.json``; see docs/weights.md for their meaning.
    ``metrics``, ``origin`` and ``model_args`` stay free-form objects (provenance and builder arguments).
    """

    status: Status
    default: bool = checked_field("true or false", default=False)
    source: Source
    # Tried in order when ``source`` fails (unreachable, missing); a file that fails verification is an error.
    fallbacks: tuple[Source, ...] | None = checked_field("a list of sources", default=None)
    sha256: str | None = checked_field(
        "the full 64-digit lower-case hex SHA-256 of the file", check=lambda v: bool(SHA256_RE.fullmatch(v)),
        default=None,
    )  # fmt: skip
    size: int | None = checked_field("the file's size in bytes (a positive int)", check=lambda v: v > 0, default=None)
    num_classes: int = checked_field("a positive int", check=lambda v: v >= 1)
    label_names: tuple[str, ...] | str | None = checked_field(
        "a list of names or the name of a JSON file in weights/", default=None
    )
    # The fields' types are checked here, their values (sides, crop, positive std) by check_preprocessing in
    # _check: the one set of limits that models and weight files share.
    input_size: tuple[int, int, int] = checked_field("[channels, height, width] of positive ints")
    interpolation: Interpolation
    crop_pct: float = checked_field("a number in (0, 1]: the centre crop's share of the resized image")
    crop_mode: Literal["center"] | None = checked_field("'center' (the only one supported)", default=None)
    mean: tuple[float, ...] = checked_field("a list of numbers, one per input channel")
    std: tuple[float, ...] = checked_field("a list of positive numbers, one per input channel")
    model_args: dict[str, Any] | None = checked_field("an object of builder keyword arguments", default=None)
    dataset: str | None = checked_field("a string", default=None)
    metrics: dict[str, Any] | None = checked_field(
        "an object such as {'top1': 76.1, 'top5': 92.9, 'command': ...}", default=None
    )
    license: str | None = checked_field("a string", default=None)
    origin: dict[str, Any] | None = checked_field(
        "an object with the 'command' that produced the weights", default=None
    )
    notes: str | None = checked_field("a string", default=None)

    # Always written, as null until known: an unpublished entry shows that its hash is still to come.
    _ALWAYS_WRITTEN: ClassVar[tuple[str, ...]] = ("sha256", "size")

    def __post_init__(self) -> None:
        if isinstance(self.source, Mapping):
            object.__setattr__(self, "source", Source.from_dict(self.source))
        if isinstance(self.fallbacks, (list, tuple)):
            object.__setattr__(self, "fallbacks", tuple(
                Source.from_dict(f) if isinstance(f, Mapping) else f for f in self.fallbacks))  # fmt: skip
        super().__post_init__()

    def _check(self) -> None:
        check_preprocessing(self.preprocessing(), "the entry", ManifestError)
        if self.published and (self.sha256 is None or self.size is None):
            unverifiable = [s for s in self.sources if not (s.third_party or s.sha256)]
            if unverifiable:
                raise ManifestError(
                    "a published entry needs its file's sha256 and size, so that downloads can be verified (a "
                    "third-party source, a Hub repo outside {org} or a torchvision URL, is verified against "
                    "upstream's SHA-256 instead)"
                )
        if self.fallbacks is not None and any(s.type == "bundled" for s in self.fallbacks):
            raise ManifestError("fallbacks cannot be bundled files: a bundled file is the only source of its entry")
        if isinstance(self.label_names, str) and relative_path_problem(self.label_names):
            raise ManifestError(f"label_names={self.label_names!r} {relative_path_problem(self.label_names)}")
        if isinstance(self.label_names, tuple) and len(self.label_names) != self.num_classes:
            raise ManifestError(f"label_names has {len(self.label_names)} names but num_classes is {self.num_classes}")
        if self.metrics is not None:
            _check_metrics(self.metrics)

    @property
    def published(self) -> bool:
        return self.status == "published"

    @property
    def sources(self) -> tuple[Source, ...]:
        """``source`` then the ``fallbacks``, in the order fetching tries them."""
        return (self.source, *(self.fallbacks or ()))

    @property
    def third_party(self) -> bool:
        """True when a source is a file this project does not publish (timm's Hub repo, torchvision's URL)."""
        return any(s.third_party for s in self.sources)

    @property
    def pinned(self) -> bool:
        """True when the manifest fixes every third-party file by its SHA-256 (``zoo pin``)."""
        return all(s.pinned for s in self.sources if s.third_party)

    @classmethod
    def from_dict(cls, data: Any, name: str | None = None) -> WeightsEntry:
        """An entry from its manifest object; a ManifestError names the entry, the field and what is valid."""
        what = f"manifest entry {name!r}: " if name else ""
        try:
            if not isinstance(data, Mapping):
                raise ManifestError("must be a JSON object")
            kwargs = cls._kwargs(data, "")
            kwargs["source"] = Source.from_dict(kwargs["source"])
            if kwargs.get("fallbacks") is not None:
                if not isinstance(kwargs["fallbacks"], list):
                    raise ManifestError(f"fallbacks={kwargs['fallbacks']!r} must be a list of sources")
                kwargs["fallbacks"] = tuple(Source.from_dict(f) for f in kwargs["fallbacks"])
            if kwargs.get("default") is None:
                kwargs.pop("default", None)
            return cls(**kwargs)
        except ValueError as e:
            raise ManifestError(f"{what}{e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The manifest object, fields in schema order; unset fields are left out (``default`` when false)."""
        out = self._json(keep_none=self._ALWAYS_WRITTEN)
        if not self.default:
            del out["default"]
        return out

    def preprocessing(self) -> dict[str, Any]:
        """The entry's fields that a model's ``pretrained_cfg`` takes over (JSON-ready, unset ones left out)."""
        keys = ("num_classes", "input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "dataset",
                "license")  # fmt: skip
        return {k: v for k, v in self.to_dict().items() if k in keys}


SCHEMA = 1
DEFAULT_HUB_ORG = "zoo-models"
_NAME_RE = r"[A-Za-z0-9_]+\.[A-Za-z0-9_\-]+"  # compiled on first use: loading never needs it
MAX_NAME_LENGTH = 128  # names become file names with a prefix and suffix; most file systems allow 255 bytes


def weights_dir() -> Path:
    """The folder holding the manifest and bundled weights.

    A source checkout keeps it at the top level (``weights/``); an installed package has it as
    ``zoo/_weights`` (pyproject.toml maps one onto the other). ``ZOO_WEIGHTS_DIR`` overrides both.
    """
    env = os.environ.get("ZOO_WEIGHTS_DIR")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "weights", package / "_weights"):
        if (candidate / "manifest.json").is_file():
            return candidate
    return package.parent / "weights"


def manifest_path() -> Path:
    """``weights_dir() / "manifest.json"``."""
    return weights_dir() / "manifest.json"


_FIX = "fix the file, or restore it (git checkout weights/manifest.json); ZOO_WEIGHTS_DIR chooses another folder"


def _read_json(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            data = parse_json(f.read())
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        raise ManifestError(f"{path} is not valid JSON ({e})", hint=_FIX) from None
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise ManifestError(f"{path} is not a manifest: it needs an object with a 'weights' object", hint=_FIX)
    return data


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int, inode: int) -> dict[str, Any]:
    # Keyed by mtime, size and inode so that an atomic rewrite (new inode) is always seen.
    return _read_json(path)


def check_name(name: str) -> str:
    """``name`` if it is a valid ``arch.tag``, else a ManifestError.

    Names become file names (cache paths, locks), so every use of a name read from the manifest checks it:
    a name such as ``a.b/../../x`` would otherwise place files anywhere.
    """
    if not isinstance(name, str) or not re.fullmatch(_NAME_RE, name) or len(name) > MAX_NAME_LENGTH:
        raise ManifestError(
            f"weights name {name!r} must be 'arch.tag' (letters, digits, '_'; '-' allowed in the tag), at most "
            f"{MAX_NAME_LENGTH} characters",
            hint=f"rename the entry in {manifest_path()}",
        )
    return name


def _entry(name: str, data: Any) -> WeightsEntry:
    check_name(name)
    try:
        return WeightsEntry.from_dict(data, name)
    except ValueError as e:
        raise ManifestError(f"{manifest_path()}: {e}", hint=_FIX) from None


def load_manifest() -> dict[str, Any]:
    """The manifest file as parsed JSON (re-read when the file changes). Treat it as read-only.

    :func:`get_entry` and :func:`entries_for_arch` give its entries as typed :class:`WeightsEntry` objects.
    """
    path = manifest_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {"schema": SCHEMA, "weights": {}}
    return _load(str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def weight_names() -> list[str]:
    """Every ``arch.tag`` in the manifest (published or not)."""
    return sorted(load_manifest()["weights"])


def hub_org() -> str:
    """The Hugging Face organisation that hosts zoo's weights: ``ZOO_HUB_ORG``, else the manifest's ``hub_org``."""
    return os.environ.get("ZOO_HUB_ORG") or load_manifest().get("hub_org") or DEFAULT_HUB_ORG


def entries_for_arch(arch: str) -> dict[str, WeightsEntry]:
    """``tag -> entry`` for every set of weights of ``arch``, in manifest order."""
    prefix = arch + "."
    return {
        name[len(prefix) :]: _entry(name, e)
        for name, e in load_manifest()["weights"].items()
        if name.startswith(prefix)
    }


def default_tag(arch: str) -> str | None:
    """The tag ``pretrained=True`` picks for ``arch``: the entry marked ``"default": true``, or the only one."""
    prefix = arch + "."
    raw = {n[len(prefix) :]: e for n, e in load_manifest()["weights"].items() if n.startswith(prefix)}
    flagged = [tag for tag, e in raw.items() if isinstance(e, dict) and e.get("default") is True]
    if len(flagged) == 1:  # the common case, decided without validating the arch's other entries
        return flagged[0]
    entries = entries_for_arch(arch)
    flagged = [tag for tag, e in entries.items() if e.default]
    if flagged:
        return flagged[0]
    if len(entries) == 1:
        return next(iter(entries))
    if entries:
        raise ManifestError(
            f"{arch} has several sets of weights ({', '.join(entries)}) and none is marked default in "
            f"{manifest_path()}; ask for one by name, e.g. '{arch}.{next(iter(entries))}'"
        )
    return None


def get_entry(arch: str, tag: str) -> WeightsEntry:
    """The manifest entry for ``arch.tag``; a ManifestError lists the tags that exist when it is missing."""
    name = f"{arch}.{tag}"
    entry = load_manifest()["weights"].get(name)
    if entry is None:
        tags = list(entries_for_arch(arch))
        known = f"its weights are: {', '.join(f'{arch}.{t}' for t in tags)}" if tags else "it has no weights"
        raise ManifestError(f"no weights named '{name}' in the manifest ({manifest_path()}); {known}")
    return _entry(name, entry)


def resolve(source: Source) -> Source:
    """A source with ``{org}`` filled in and defaults (Hub revision "main") applied."""
    if source.type == "hub":
        assert source.repo_id is not None
        source = replace(source, repo_id=source.repo_id.replace("{org}", hub_org()), revision=source.revision or "main")
    return source


def resolve_source(entry: WeightsEntry) -> Source:
    """The entry's first source, resolved (see :func:`resolve`)."""
    return resolve(entry.source)


def resolve_sources(entry: WeightsEntry) -> tuple[Source, ...]:
    """Every source of the entry, in the order fetching tries them, resolved; each carries the SHA-256 and
    size its file must have where the manifest knows them (the entry's own belong to its first source)."""
    first = entry.source
    if first.sha256 is None and entry.sha256 is not None:
        first = replace(first, sha256=entry.sha256, size=entry.size)
    return tuple(resolve(s) for s in (first, *entry.sources[1:]))


def describe(source: Source) -> str:
    """One line saying where a (resolved) source's file comes from."""
    if source.type == "hub":
        return f"Hugging Face Hub {source.repo_id} ({source.filename} @ {source.revision or 'main'})"
    if source.type == "url":
        return str(source.url) + (" (torch pickle, converted to safetensors)" if source.format == "torch" else "")
    return f"bundled {bundled_path(source)}"


def describe_source(entry: WeightsEntry) -> str:
    """One line saying where the entry's file comes from (its first source, then any fallbacks)."""
    sources = resolve_sources(entry)
    text = describe(sources[0])
    return text + "".join(f", else {describe(s)}" for s in sources[1:])


def bundled_path(source: Source) -> Path:
    """The file of a bundled source: ``weights_dir() / path``, refused if the path would leave weights/."""
    problem = relative_path_problem(source.path)
    if problem:
        raise ManifestError(
            f"bundled source path {source.path!r} {problem}", hint=f"fix the entry in {manifest_path()}"
        )
    return weights_dir() / str(source.path)


@lru_cache(maxsize=8)
def _read_label_file(path: str, mtime_ns: int) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as f:
        try:
            names = parse_json(f.read())
        except ValueError as e:
            raise ManifestError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{path} must hold a JSON list of class names")
    return tuple(names)


def label_names(entry: WeightsEntry) -> tuple[str, ...] | None:
    """The class names of an entry: inline, or read from the JSON file in ``weights/`` it names."""
    labels = entry.label_names
    if labels is None:
        return None
    if isinstance(labels, str):
        problem = relative_path_problem(labels)
        if problem:
            raise ManifestError(f"label_names file {labels!r} {problem}", hint=f"fix the entry in {manifest_path()}")
        path = weights_dir() / labels
        if not path.is_file():
            raise ManifestError(f"label file {labels!r} named by the manifest is missing from {weights_dir()}")
        return _read_label_file(str(path), path.stat().st_mtime_ns)
    return tuple(labels)


def validate_entry(
    name: str,
    entry: WeightsEntry | Mapping[str, Any],
    check_files: bool = True,
    base_dir: str | os.PathLike[str] | None = None,
) -> WeightsEntry:
    """The entry as a :class:`WeightsEntry`; a ManifestError names the field and what is valid when it is not one.

    ``check_files`` also checks that a label file named by the entry exists in ``base_dir`` (default
    ``weights_dir()``) with ``num_classes`` names, and that a bundled file exists with the recorded size.
    """
    base = Path(base_dir) if base_dir is not None else weights_dir()
    check_name(name)
    parsed = entry if isinstance(entry, WeightsEntry) else WeightsEntry.from_dict(entry, name)
    if not check_files:
        return parsed
    labels = parsed.label_names
    if isinstance(labels, str):
        path = base / labels
        if not path.is_file():
            raise ManifestError(f"manifest entry {name!r}: label_names names {labels!r}, which is not a file in {base}")
        count = len(_read_label_file(str(path), path.stat().st_mtime_ns))
        if count != parsed.num_classes:
            raise ManifestError(
                f"manifest entry {name!r}: label_names has {count} names but num_classes is {parsed.num_classes}"
            )
    if parsed.source.type == "bundled" and parsed.published:
        path = base / str(parsed.source.path)
        if not path.is_file():
            raise ManifestError(f"manifest entry {name!r}: bundled file {path} is missing")
        if path.stat().st_size != parsed.size:
            raise ManifestError(
                f"manifest entry {name!r}: bundled file {path} has {path.stat().st_size} bytes, the entry says "
                f"{parsed.size}"
            )
    return parsed


def validate_manifest(
    data: Mapping[str, Any], check_files: bool = True, base_dir: str | os.PathLike[str] | None = None
) -> None:
    """Validate a whole manifest: the top level, every entry, and at most one default per arch.

    Label files and bundled weights are looked up in ``base_dir`` (default ``weights_dir()``).
    """
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA or not isinstance(data.get("weights"), dict):
        raise ManifestError(f"a manifest is an object with schema={SCHEMA} and a 'weights' object")
    defaults: dict[str, list[str]] = {}
    for name, entry in data["weights"].items():
        if validate_entry(name, entry, check_files=check_files, base_dir=base_dir).default:
            defaults.setdefault(name.split(".")[0], []).append(name)
    for arch, names in defaults.items():
        if len(names) > 1:
            raise ManifestError(f"{arch} has more than one default set of weights: {', '.join(names)}")


def _ordered_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    # Fields in WeightsEntry's order (and the source's in Source's); free-form objects sorted by key.
    def sort_nested(value: Any) -> Any:
        return {k: sort_nested(value[k]) for k in sorted(value)} if isinstance(value, dict) else value

    out = {k: sort_nested(entry[k]) for k in WeightsEntry.field_names() if k in entry}

    def source_order(source: Any) -> Any:
        return {k: source[k] for k in Source.field_names() if k in source} if isinstance(source, dict) else source

    if isinstance(out.get("source"), dict):
        out["source"] = source_order(out["source"])
    if isinstance(out.get("fallbacks"), list):
        out["fallbacks"] = [source_order(f) for f in out["fallbacks"]]
    return out


def _render(value: Any, indent: int = 0) -> str:
    # json.dumps(indent=2) puts every number of a mean/std/input_size list on its own line; short
    # lists of scalars read better on one line, and everything else stays one item per line.
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_render(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        flat = json.dumps(value, ensure_ascii=False)
        if not any(isinstance(v, (dict, list)) for v in value) and len(flat) <= 100:
            return flat
        return "[\n" + ",\n".join(inner + _render(v, indent + 2) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


def dumps(data: Mapping[str, Any]) -> str:
    """The manifest as stable, diff-friendly JSON: entries in natural order, fields in schema order."""
    weights = data.get("weights", {})
    top = {k: v for k, v in data.items() if k != "weights"}
    ordered = {"schema": top.pop("schema", SCHEMA), **dict(sorted(top.items()))}
    ordered["weights"] = {n: _ordered_entry(weights[n]) for n in sorted(weights, key=natural_key)}
    return _render(ordered) + "\n"


def write_manifest(data: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
    """Validate ``data`` and write it atomically (temporary file, then rename) to ``path``."""
    target = Path(path) if path is not None else manifest_path()
    validate_manifest(data, base_dir=target.parent)
    text = dumps(data)
    return write_text_atomic(target, text)


def update_entry(
    name: str,
    entry: WeightsEntry | Mapping[str, Any],
    path: str | os.PathLike[str] | None = None,
    merge: bool = False,
) -> WeightsEntry:
    """Add or replace the manifest entry ``name`` (``arch.tag``) and write the manifest atomically.

    ``entry`` is a :class:`WeightsEntry` or its JSON object; with ``merge=True`` a mapping of some fields
    updates the existing entry instead of replacing it. The result is validated before anything is
    written; an entry marked ``"default": true`` takes the default flag from the arch's other entries.
    A file lock serialises concurrent writers. Returns the entry as written.
    """
    from filelock import FileLock

    target = Path(path) if path is not None else manifest_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        empty = {"schema": SCHEMA, "hub_org": DEFAULT_HUB_ORG, "weights": {}}
        data = _read_json(target) if target.is_file() else empty
        weights = dict(data.get("weights", {}))
        fields = entry.to_dict() if isinstance(entry, WeightsEntry) else dict(entry)
        new = {**weights.get(name, {}), **fields} if merge else fields
        if new.get("default"):
            arch = name.split(".")[0]
            for other, e in weights.items():
                if other != name and other.split(".")[0] == arch and e.get("default"):
                    weights[other] = {k: v for k, v in e.items() if k != "default"}
        weights[name] = new
        write_manifest({**data, "weights": weights}, target)
    return WeightsEntry.from_dict(new, name)
