"""The weights manifest (``weights/manifest.json``): :class:`WeightsEntry` and :class:`Source` are frozen dataclasses
checked field by field with :mod:`zoo.utils.checks`, so holding one means holding a valid one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from zoo.errors import ManifestError
from zoo.models.cfg import PREPROCESSING, check_preprocessing
from zoo.utils import checks, natural_key
from zoo.utils.checks import Invalid
from zoo.utils.files import parse_json, write_text_atomic

SCHEMA = 1
DEFAULT_HUB_ORG = "zoo-models"
STATUSES = ("published", "unpublished")
SOURCE_TYPES = ("hub", "url", "bundled")
MAX_MANIFEST_BYTES = 16 << 20
MAX_NAME_LENGTH = 128  # names become file names with a prefix and suffix; most file systems allow 255 bytes
_NAME = re.compile(r"[A-Za-z0-9_]+\.[A-Za-z0-9_\-]+")
# torchvision's file names end in the first hex digits of the file's SHA-256: resnet50-11ad3fa6.pth
_HASH_PREFIX = re.compile(r"-([0-9a-f]{8,64})\.pth$")
_FIX = "fix the file, or restore it (git checkout weights/manifest.json); ZOO_WEIGHTS_DIR chooses another folder"


def hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix a torchvision file name carries (``.../resnet50-11ad3fa6.pth``), if any."""
    match = _HASH_PREFIX.search(url.split("?")[0])
    return match.group(1) if match else None


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where an entry's file comes from: a Hub repo file (``repo_id``, ``filename``, ``revision``), a torchvision
    ``.pth`` URL whose name carries its SHA-256 prefix (read weights-only and converted once), or a file bundled in
    ``weights/`` (``path``)."""

    type: str
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    url: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        checks.one_of("type", self.type, SOURCE_TYPES)
        wanted = {"hub": ("repo_id", "filename"), "url": ("url",), "bundled": ("path",)}[self.type]
        optional = ("revision",) if self.type == "hub" else ()
        for f in ("repo_id", "filename", "revision", "url", "path"):
            value = getattr(self, f)
            if (value is None) == (f in wanted) and f not in optional:
                must = f"is needed by a {self.type} source" if value is None else f"is not for a {self.type} source"
                raise Invalid(f, value, must)
        if self.type == "hub":
            checks.repo_id("repo_id", self.repo_id, org_placeholder=True)
            if not checks.relative_path("filename", self.filename).endswith(".safetensors"):
                raise Invalid("filename", self.filename, "must be a .safetensors file")
            if self.revision is not None:
                checks.revision("revision", self.revision)
        elif self.type == "url":
            url = checks.text("url", self.url)
            if not url.startswith(("https://", "http://")) or hash_prefix(url) is None:
                raise Invalid("url", url, "must be an http(s) URL of a .pth whose name ends in its SHA-256 prefix")
        elif not checks.relative_path("path", self.path).endswith(".safetensors"):
            raise Invalid("path", self.path, "must be a .safetensors file in weights/")

    @property
    def third_party(self) -> bool:
        """A file this project does not publish: a Hub repo outside ``{org}``, or torchvision's URL."""
        return self.type == "url" or (self.type == "hub" and not str(self.repo_id).startswith("{org}/"))

    def resolved(self) -> Source:
        """``{org}`` filled in and the Hub revision defaulted to ``main``."""
        if self.type != "hub":
            return self
        repo = str(self.repo_id).replace("{org}", hub_org())
        return dataclasses.replace(self, repo_id=repo, revision=self.revision or "main")

    def describe(self) -> str:
        """One line saying where the (resolved) file comes from."""
        if self.type == "hub":
            return f"Hugging Face Hub {self.repo_id} ({self.filename} @ {self.revision or 'main'})"
        if self.type == "url":
            return f"{self.url} (torch pickle, converted to safetensors)"
        return f"bundled {weights_dir() / str(self.path)}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _source(name: str, value: Any) -> Source:
    if isinstance(value, Source):
        return value
    data = checks.json_object(name, value)
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(Source)})
    if unknown:
        raise Invalid(f"{name}.{unknown[0]}", data[unknown[0]], "is not a field of a source")
    if "type" not in data:
        raise Invalid(f"{name}.type", None, f"is required: one of {', '.join(SOURCE_TYPES)}")
    return Source(**data)


@dataclass(frozen=True, kw_only=True)
class WeightsEntry:
    """One entry of the manifest; field order is the file's. ``metrics``, ``origin`` and ``model_args`` are
    free-form objects (provenance and builder arguments)."""

    status: str
    default: bool = False
    source: Source
    fallbacks: tuple[Source, ...] | None = None  # tried in order when ``source`` cannot be reached
    sha256: str | None = None
    size: int | None = None
    num_classes: int
    label_names: tuple[str, ...] | str | None = None  # the names, or a JSON file in weights/
    input_size: tuple[int, int, int]
    interpolation: str
    crop_pct: float
    crop_mode: str | None = None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model_args: dict[str, Any] | None = None
    dataset: str | None = None
    metrics: dict[str, Any] | None = None
    license: str | None = None
    origin: dict[str, Any] | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        def put(field: str, value: Any) -> None:
            object.__setattr__(self, field, value)

        checks.one_of("status", self.status, STATUSES)
        checks.one_of("default", self.default, (True, False))
        put("source", _source("source", self.source))
        if self.fallbacks is not None:
            if not isinstance(self.fallbacks, (list, tuple)):
                raise Invalid("fallbacks", self.fallbacks, "must be a list of sources")
            put("fallbacks", tuple(_source("fallbacks", f) for f in self.fallbacks))
            if any(s.type == "bundled" for s in self.fallbacks):
                raise Invalid("fallbacks", self.fallbacks, "cannot be bundled files (a bundled file is the only one)")
        if self.sha256 is not None:
            checks.sha256("sha256", self.sha256)
        if self.size is not None:
            checks.int_in("size", self.size, 1)
        checks.int_in("num_classes", self.num_classes, 1)
        for field in ("input_size", "mean", "std"):
            value = getattr(self, field)
            if not isinstance(value, (list, tuple)):
                raise Invalid(field, value, "must be a list")
            put(field, tuple(value))
        labels = self.label_names
        if isinstance(labels, (list, tuple)):
            if not all(isinstance(n, str) for n in labels) or len(labels) != self.num_classes:
                raise Invalid("label_names", labels, f"must be {self.num_classes} names, one per class")
            put("label_names", tuple(labels))
        elif labels is not None:
            checks.relative_path("label_names", labels)
        if self.crop_mode is not None:
            checks.one_of("crop_mode", self.crop_mode, ("center",))
        check_preprocessing(self.preprocessing(), "the entry", ManifestError)
        for field in ("model_args", "metrics", "origin"):
            if getattr(self, field) is not None:
                put(field, json.loads(json.dumps(checks.json_object(field, getattr(self, field)))))  # a private copy
        for field in ("dataset", "license", "notes"):
            if getattr(self, field) is not None:
                checks.text(field, getattr(self, field))
        for key in ("top1", "top5"):
            value = (self.metrics or {}).get(key)
            if value is not None and not checks.is_number(value):
                raise Invalid(f"metrics.{key}", value, "must be a number (percent) or null")
        if self.metrics and any(self.metrics.get(k) is not None for k in ("top1", "top5")):
            checks.text("metrics.command", self.metrics.get("command"))
        if self.published and (self.sha256 is None or self.size is None) and not self.third_party:
            raise Invalid("sha256", self.sha256, "is needed, with size, by a published file of this project's own")

    @property
    def published(self) -> bool:
        return self.status == "published"

    @property
    def sources(self) -> tuple[Source, ...]:
        """``source`` then the ``fallbacks``, in the order fetching tries them."""
        return (self.source, *(self.fallbacks or ()))

    @property
    def third_party(self) -> bool:
        """A file this project does not publish (timm's Hub repo, torchvision's URL): checked against upstream's
        SHA-256 on the first download, then against this machine's pin."""
        return self.source.third_party

    @classmethod
    def from_dict(cls, data: Any, name: str | None = None) -> WeightsEntry:
        """An entry from its manifest object; a ManifestError names the entry and the field."""
        where = f"{manifest_path()}: entry {name!r}" if name else "manifest entry"
        with checks.reported(where, ManifestError, hint=_FIX):
            data = checks.record_fields(cls, data, "the entry")
            try:
                return cls(**{k: v for k, v in data.items() if not (k == "default" and v is None)})
            except ManifestError as e:  # check_preprocessing's, which names the field but not the entry
                raise ManifestError(f"{where}: {e.args[0]}", hint=_FIX) from None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields in the order they are written to the manifest."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """The manifest object: fields in order, unset ones left out (``sha256``/``size`` written as null)."""
        out: dict[str, Any] = {}
        for f in self.field_names():
            value = getattr(self, f)
            if value is None and f not in ("sha256", "size") or (f == "default" and not value):
                continue
            if isinstance(value, Source):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, Source) else v for v in value]
            elif isinstance(value, dict):
                value = json.loads(json.dumps(value, sort_keys=True))
            out[f] = value
        return out

    def preprocessing(self) -> dict[str, Any]:
        """The fields a model's ``pretrained_cfg`` takes over (unset ones left out)."""
        keys = (*PREPROCESSING, "num_classes", "dataset", "license")
        return {k: list(v) if isinstance(v, tuple) else v for k in keys if (v := getattr(self, k)) is not None}


def weights_dir() -> Path:
    """The folder of the manifest and bundled weights: ``ZOO_WEIGHTS_DIR``, else ``weights/`` of a checkout or the
    installed package's ``zoo/_weights`` (pyproject.toml maps one onto the other)."""
    if os.environ.get("ZOO_WEIGHTS_DIR"):
        return Path(os.environ["ZOO_WEIGHTS_DIR"])
    package = Path(__file__).resolve().parent.parent
    return next(
        (c for c in (package.parent / "weights", package / "_weights") if (c / "manifest.json").is_file()),
        package.parent / "weights",
    )


def hub_org() -> str:
    """The Hub organisation of zoo's own weights: ``ZOO_HUB_ORG``, else the manifest's ``hub_org``."""
    return os.environ.get("ZOO_HUB_ORG") or load_manifest().get("hub_org") or DEFAULT_HUB_ORG


def manifest_path() -> Path:
    return weights_dir() / "manifest.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = parse_json(checks.read_bounded(path, MAX_MANIFEST_BYTES, "the manifest"))
    except (ValueError, OSError) as e:  # not JSON, not UTF-8, not a regular file, too large
        raise ManifestError(f"{path} is not a readable manifest ({e})", hint=_FIX) from None
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise ManifestError(f"{path} is not a manifest: it needs an object with a 'weights' object", hint=_FIX)
    return data


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int, inode: int) -> tuple[dict[str, Any], dict[str, WeightsEntry]]:
    # Keyed by mtime, size and inode (an atomic rewrite is a new inode); the second dict holds the entries parsed
    # from this version, so that a warm load validates its entry once.
    return _read(Path(path)), {}


def _loaded() -> tuple[dict[str, Any], dict[str, WeightsEntry]]:
    path = manifest_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {"schema": SCHEMA, "weights": {}}, {}
    return _load(str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def load_manifest() -> dict[str, Any]:
    """The manifest as parsed JSON (re-read when the file changes); treat it as read-only."""
    return _loaded()[0]


def check_name(name: str) -> str:
    """``name`` if it is a valid ``arch.tag`` (names become file names), else a ManifestError."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise ManifestError(
            f"weights name {name!r} must be 'arch.tag' (letters, digits, '_'; '-' in the tag), at most "
            f"{MAX_NAME_LENGTH} characters",
            hint=f"rename the entry in {manifest_path()}",
        )
    return name


def weight_names() -> list[str]:
    """Every ``arch.tag`` in the manifest (published or not)."""
    return sorted(load_manifest()["weights"])


def entries_for_arch(arch: str) -> dict[str, WeightsEntry]:
    """``tag -> entry`` for every set of weights of ``arch``, in manifest order."""
    raw = load_manifest()["weights"]
    return {n.split(".", 1)[1]: get_entry(*n.split(".", 1)) for n in raw if n.split(".", 1)[0] == arch}


def get_entry(arch: str, tag: str) -> WeightsEntry:
    """The entry ``arch.tag`` (parsed once per version of the file); a ManifestError lists the arch's tags."""
    name = f"{arch}.{tag}"
    data, parsed = _loaded()
    if name not in parsed:
        if name not in data["weights"]:
            tags = [n for n in data["weights"] if n.split(".", 1)[0] == arch]
            known = f"its weights are: {', '.join(tags)}" if tags else "it has no weights"
            raise ManifestError(f"no weights named {name!r} in the manifest ({manifest_path()}); {known}")
        parsed[name] = WeightsEntry.from_dict(data["weights"][name], check_name(name))
    return parsed[name]


def default_tag(arch: str) -> str | None:
    """The tag ``pretrained=True`` picks for ``arch``: the entry marked default, or its only one."""
    raw = {n.split(".", 1)[1]: e for n, e in load_manifest()["weights"].items() if n.split(".", 1)[0] == arch}
    flagged = [tag for tag, e in raw.items() if isinstance(e, dict) and e.get("default") is True]
    if len(flagged) == 1 or len(raw) == 1:
        return (flagged or list(raw))[0]
    if raw:
        raise ManifestError(
            f"{arch} has {len(flagged) or 'no'} entries marked default among {', '.join(raw)}",
            hint=f"mark one in {manifest_path()}, or ask for one by name ('{arch}.{next(iter(raw))}')",
        )
    return None


def label_names(entry: WeightsEntry) -> tuple[str, ...] | None:
    """The class names of an entry: inline, or read from the JSON file in ``weights/`` it names."""
    if not isinstance(entry.label_names, str):
        return entry.label_names
    return _label_file(weights_dir() / entry.label_names)


def _label_file(path: Path) -> tuple[str, ...]:
    try:
        names = parse_json(checks.read_bounded(path, MAX_MANIFEST_BYTES, "label_names"))
    except (ValueError, OSError) as e:
        raise ManifestError(f"the label file {path} named by the manifest cannot be read ({e})", hint=_FIX) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{path} must hold a JSON list of class names", hint=_FIX)
    return tuple(names)


def describe_source(entry: WeightsEntry) -> str:
    """Where the entry's file comes from: its first source, then any fallbacks."""
    return ", else ".join(s.resolved().describe() for s in entry.sources)


def validate_manifest(data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> None:
    """Every entry valid, at most one default per arch, and the files an entry names present in ``base_dir``
    (default ``weights_dir()``): a label file with ``num_classes`` names, a bundled file of the recorded size."""
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA or not isinstance(data.get("weights"), dict):
        raise ManifestError(f"a manifest is an object with schema={SCHEMA} and a 'weights' object")
    base = Path(base_dir) if base_dir is not None else weights_dir()
    defaults: dict[str, list[str]] = {}
    for name, raw in data["weights"].items():
        entry = WeightsEntry.from_dict(raw, check_name(name))
        if entry.default:
            defaults.setdefault(name.split(".")[0], []).append(name)
        if isinstance(entry.label_names, str):
            count = len(_label_file(base / entry.label_names))
            if count != entry.num_classes:
                raise ManifestError(
                    f"manifest entry {name!r}: {entry.label_names} has {count} names for {entry.num_classes} classes"
                )
        if entry.source.type == "bundled" and entry.published:
            path = base / str(entry.source.path)
            size = path.stat().st_size if path.is_file() else None
            if size != entry.size:
                raise ManifestError(
                    f"manifest entry {name!r}: the bundled file {path} has "
                    f"{'no' if size is None else size} bytes, the entry says {entry.size}"
                )
    for arch, names in defaults.items():
        if len(names) > 1:
            raise ManifestError(f"{arch} has more than one default set of weights: {', '.join(names)}")


def _render(value: Any, indent: int = 0) -> str:
    # Short lists of scalars on one line (json.dumps(indent=2) gives every number of a mean its own line).
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_render(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, list) or (len(flat) <= 100 and not any(isinstance(v, (dict, list)) for v in value)):
        return flat
    return "[\n" + ",\n".join(inner + _render(v, indent + 2) for v in value) + "\n" + pad + "]"


def dumps(data: Mapping[str, Any]) -> str:
    """The manifest as stable, diff-friendly JSON: entries in natural order, fields in schema order, the free-form
    objects sorted by key."""
    weights = data.get("weights", {})
    top = {k: v for k, v in data.items() if k not in ("schema", "weights")}
    result = {"schema": data.get("schema", SCHEMA), **dict(sorted(top.items()))}
    order = sorted(weights, key=natural_key)
    result["weights"] = {n: WeightsEntry.from_dict(weights[n], n).to_dict() for n in order}
    return _render(result) + "\n"


def write_manifest(data: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
    """Validate ``data`` and write it atomically to ``path`` (default: the manifest zoo reads)."""
    target = Path(path) if path is not None else manifest_path()
    validate_manifest(data, base_dir=target.parent)
    return write_text_atomic(target, dumps(data))


def update_entry(
    name: str, entry: WeightsEntry | Mapping[str, Any], path: str | os.PathLike[str] | None = None, merge: bool = False
) -> WeightsEntry:
    """Add or replace the entry ``name`` and rewrite the manifest atomically, under a file lock; with ``merge`` a
    mapping of some fields updates the entry. An entry marked default takes the flag from the arch's others."""
    from filelock import FileLock

    target = Path(path) if path is not None else manifest_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        data = _read(target) if target.is_file() else {"schema": SCHEMA, "hub_org": DEFAULT_HUB_ORG, "weights": {}}
        weights = dict(data["weights"])
        fields = entry.to_dict() if isinstance(entry, WeightsEntry) else dict(entry)
        new = {**weights.get(name, {}), **fields} if merge else fields
        if new.get("default"):
            for other, e in weights.items():
                if other != name and other.split(".")[0] == name.split(".")[0] and e.get("default"):
                    weights[other] = {k: v for k, v in e.items() if k != "default"}
        weights[check_name(name)] = new
        write_manifest({**data, "weights": weights}, target)
    return WeightsEntry.from_dict(new, name)
