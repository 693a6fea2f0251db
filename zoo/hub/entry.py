"""The typed manifest entry: :class:`WeightsEntry` and its :class:`Source`.

These two dataclasses are the one definition of an entry of ``weights/manifest.json``: its fields, their
order in the file, their types and what a valid value is. Validation is derived from them
(:class:`zoo.hub.record.Record`): the type annotations and each field's ``must`` text, then the checks
that involve several fields (``mean`` has one value per input channel, a published entry has its hash)
in ``_check``. Constructing an entry validates it, so code that holds a ``WeightsEntry`` holds a valid one.
"""

# No ``from __future__ import annotations``: the field annotations are evaluated once, at import, instead of
# by get_type_hints on the first entry of every process (1.5 ms of every pretrained load).
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from zoo.errors import ManifestError
from zoo.hub.record import Record, fits_type
from zoo.hub.record import checked_field as _field

__all__ = [
    "COMMIT_RE", "INTERPOLATIONS", "MAX_INPUT_SIDE", "MAX_RESIZE_SIDE", "SHA256_RE", "SOURCE_TYPES", "STATUSES",
    "Source", "WeightsEntry", "hash_prefix", "relative_path_problem",
]  # fmt: skip

Status = Literal["published", "unpublished"]
SourceType = Literal["hub", "url", "bundled"]
FileFormat = Literal["safetensors", "torch"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]
STATUSES: tuple[str, ...] = get_args(Status)
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
_REPO_PART_RE = re.compile(r"[A-Za-z0-9_.{}\-]+")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
# torchvision's file names end in the first hex digits of the file's SHA-256: resnet50-11ad3fa6.pth
_HASH_PREFIX_RE = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
# Limits on preprocessing from untrusted metadata: the largest input side a set of weights may declare, and
# the largest side the eval transform may resize to (size / crop_pct). ImageNet models use 224-600 px.
MAX_INPUT_SIDE = 4096
MAX_RESIZE_SIDE = 8192


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
    repo_id: str | None = _field("'org/name' (org may be '{org}')", default=None)  # hub
    filename: str | None = _field("a file name", default=None)  # hub
    revision: str | None = _field("a branch, tag or commit", default=None)  # hub; absent means "main"
    url: str | None = _field("an http(s) URL", default=None)  # url
    format: FileFormat | None = None  # url; absent means "safetensors"
    path: str | None = _field("a path relative to weights/", default=None)  # bundled
    sha256: str | None = _field(
        "the full 64-digit lower-case hex SHA-256 of the file", check=lambda v: bool(SHA256_RE.fullmatch(v)),
        default=None,
    )  # fmt: skip
    size: int | None = _field("the file's size in bytes (a positive int)", check=lambda v: v > 0, default=None)

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
    def from_dict(cls, data: Any) -> "Source":
        """A source from its manifest object (a ManifestError naming what is wrong)."""
        if not isinstance(data, Mapping) or data.get("type") not in SOURCE_TYPES:
            raise ManifestError(f"source={data!r} must be an object whose type is one of {', '.join(SOURCE_TYPES)}")
        return cls(**cls._kwargs(data, "source has "))

    def to_dict(self) -> dict[str, Any]:
        """The manifest object: only the fields that are set."""
        return self._json()


def _positive(values: Any) -> bool:
    return all(v > 0 for v in values)


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
    default: bool = _field("true or false", default=False)
    source: Source
    # Tried in order when ``source`` fails (unreachable, missing); a file that fails verification is an error.
    fallbacks: tuple[Source, ...] | None = _field("a list of sources", default=None)
    sha256: str | None = _field(
        "the full 64-digit lower-case hex SHA-256 of the file", check=lambda v: bool(SHA256_RE.fullmatch(v)),
        default=None,
    )  # fmt: skip
    size: int | None = _field("the file's size in bytes (a positive int)", check=lambda v: v > 0, default=None)
    num_classes: int = _field("a positive int", check=lambda v: v >= 1)
    label_names: tuple[str, ...] | str | None = _field(
        "a list of names or the name of a JSON file in weights/", default=None
    )
    input_size: tuple[int, int, int] = _field(
        f"[channels, height, width] of positive ints, each side at most {MAX_INPUT_SIDE}",
        check=lambda v: _positive(v) and max(v[1:]) <= MAX_INPUT_SIDE,
    )
    interpolation: Interpolation
    crop_pct: float = _field("in (0, 1]: the centre crop's share of the resized image", check=lambda v: 0 < v <= 1)
    crop_mode: Literal["center"] | None = _field("'center' (the only one supported)", default=None)
    mean: tuple[float, ...] = _field("a list of numbers, one per input channel")
    std: tuple[float, ...] = _field("a list of positive numbers, one per input channel", check=_positive)
    model_args: dict[str, Any] | None = _field("an object of builder keyword arguments", default=None)
    dataset: str | None = _field("a string", default=None)
    metrics: dict[str, Any] | None = _field(
        "an object such as {'top1': 76.1, 'top5': 92.9, 'command': ...}", default=None
    )
    license: str | None = _field("a string", default=None)
    origin: dict[str, Any] | None = _field("an object with the 'command' that produced the weights", default=None)
    notes: str | None = _field("a string", default=None)

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
        channels = self.input_size[0]
        if len(self.mean) != channels:
            raise ManifestError(f"mean={list(self.mean)!r} must be a list of {channels} numbers")
        if len(self.std) != channels:
            raise ManifestError(f"std={list(self.std)!r} must be a list of {channels} positive numbers")
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
        if max(self.input_size[1:]) / self.crop_pct > MAX_RESIZE_SIDE:
            raise ManifestError(
                f"input_size {list(self.input_size)} with crop_pct={self.crop_pct} resizes to more than "
                f"{MAX_RESIZE_SIDE} pixels"
            )
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
    def from_dict(cls, data: Any, name: str | None = None) -> "WeightsEntry":
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
