"""The weights manifest (``weights/manifest.json``): one entry per ``arch.tag``.

The manifest is the single description of every set of pretrained weights: where the file lives, its
SHA-256 and size, and the preprocessing, labels, metrics, licence and provenance that go with it. The
registry, ``zoo info``, the docs tables and the loader all read it; nothing repeats it by hand.

An entry (see docs/weights.md for the full field list)::

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
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from zoo.utils import natural_key
from zoo.utils.files import write_text_atomic

SCHEMA = 1
DEFAULT_HUB_ORG = "zoo-models"
STATUSES = ("published", "unpublished")
SOURCE_TYPES = ("hub", "url", "bundled")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_SHA256_RE = r"[0-9a-f]{64}"
_NAME_RE = r"[A-Za-z0-9_]+\.[A-Za-z0-9_\-]+"  # compiled on first use: loading never needs them

# The order fields are written in, so that a diff of the manifest reads like the docs.
_FIELD_ORDER = (
    "status", "default", "source", "sha256", "size", "num_classes", "label_names", "input_size",
    "interpolation", "crop_pct", "crop_mode", "mean", "std", "model_args", "dataset", "metrics",
    "license", "origin", "notes",
)  # fmt: skip
_KNOWN_FIELDS = frozenset(_FIELD_ORDER)


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


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int, inode: int) -> dict[str, Any]:
    # Keyed by mtime, size and inode so that an atomic rewrite (new inode) is always seen.
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_manifest() -> dict[str, Any]:
    """The parsed manifest (re-read when the file changes). Treat it as read-only."""
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


def entries_for_arch(arch: str) -> dict[str, dict[str, Any]]:
    """``tag -> entry`` for every set of weights of ``arch``, in manifest order."""
    prefix = arch + "."
    return {name[len(prefix) :]: e for name, e in load_manifest()["weights"].items() if name.startswith(prefix)}


def default_tag(arch: str) -> str | None:
    """The tag ``pretrained=True`` picks for ``arch``: the entry marked ``"default": true``, or the only one."""
    entries = entries_for_arch(arch)
    flagged = [tag for tag, e in entries.items() if e.get("default")]
    if flagged:
        return flagged[0]
    if len(entries) == 1:
        return next(iter(entries))
    if entries:
        raise ValueError(
            f"{arch} has several sets of weights ({', '.join(entries)}) and none is marked default in "
            f"{manifest_path()}; ask for one by name, e.g. '{arch}.{next(iter(entries))}'"
        )
    return None


def get_entry(arch: str, tag: str) -> dict[str, Any]:
    """The manifest entry for ``arch.tag``; a ValueError lists the tags that exist when it is missing."""
    entry = load_manifest()["weights"].get(f"{arch}.{tag}")
    if entry is None:
        tags = list(entries_for_arch(arch))
        known = f"its weights are: {', '.join(f'{arch}.{t}' for t in tags)}" if tags else "it has no weights"
        raise ValueError(f"no weights named '{arch}.{tag}' in the manifest ({manifest_path()}); {known}")
    return entry


def resolve_source(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's source with ``{org}`` filled in and defaults (Hub revision) applied."""
    source = dict(entry["source"])
    if source["type"] == "hub":
        source["repo_id"] = source["repo_id"].replace("{org}", hub_org())
        source.setdefault("revision", "main")
    return source


def describe_source(entry: Mapping[str, Any]) -> str:
    """One line saying where the entry's file comes from."""
    source = resolve_source(entry)
    if source["type"] == "hub":
        return f"Hugging Face Hub {source['repo_id']} ({source['filename']} @ {source['revision']})"
    if source["type"] == "url":
        return source["url"]
    return f"bundled {weights_dir() / source['path']}"


@lru_cache(maxsize=8)
def _read_label_file(path: str, mtime_ns: int) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path} must hold a JSON list of class names")
    return tuple(names)


def label_names(entry: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The class names of an entry: inline, or read from the JSON file in ``weights/`` it names."""
    labels = entry.get("label_names")
    if labels is None:
        return None
    if isinstance(labels, str):
        path = weights_dir() / labels
        if not path.is_file():
            raise ValueError(f"label file {labels!r} named by the manifest is missing from {weights_dir()}")
        return _read_label_file(str(path), path.stat().st_mtime_ns)
    return tuple(labels)


def _fail(name: str, message: str) -> None:
    raise ValueError(f"manifest entry {name!r}: {message}")


def _check_number_list(name: str, field: str, value: Any, length: int, positive: bool = False) -> None:
    ok = isinstance(value, list) and len(value) == length
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if ok and positive:
        ok = all(v > 0 for v in value)
    if not ok:
        kind = "positive numbers" if positive else "numbers"
        _fail(name, f"{field}={value!r} must be a list of {length} {kind}")


def _check_source(name: str, source: Any) -> None:
    if not isinstance(source, dict) or source.get("type") not in SOURCE_TYPES:
        _fail(name, f"source={source!r} must be an object whose type is one of {', '.join(SOURCE_TYPES)}")
    kind = source["type"]
    if kind == "hub":
        repo_id, filename = source.get("repo_id"), source.get("filename")
        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
            _fail(name, f"hub source needs repo_id 'org/name' (org may be '{{org}}'), got {repo_id!r}")
        if not isinstance(filename, str) or not filename.endswith(".safetensors"):
            _fail(name, f"hub source needs a filename ending in .safetensors, got {filename!r}")
        if not isinstance(source.get("revision", "main"), str):
            _fail(name, f"hub revision must be a string, got {source['revision']!r}")
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            _fail(name, f"url source needs an http(s) URL, got {url!r}")
        if not url.split("?")[0].endswith(".safetensors"):
            _fail(name, f"url {url!r} must point at a .safetensors file (pickle files are not loaded)")
    else:
        path = source.get("path")
        if (
            not isinstance(path, str)
            or not path.endswith(".safetensors")
            or Path(path).is_absolute()
            or ".." in Path(path).parts
        ):
            _fail(name, f"bundled source needs a .safetensors path relative to weights/, got {path!r}")
    extra = set(source) - {"type", "repo_id", "filename", "revision", "url", "path"}
    if extra:
        _fail(name, f"source has unknown field(s) {', '.join(sorted(extra))}")


def validate_entry(
    name: str, entry: Mapping[str, Any], check_files: bool = True, base_dir: str | os.PathLike[str] | None = None
) -> None:
    """Raise a ValueError naming the field and what is valid when ``entry`` breaks the schema.

    ``check_files`` also checks that a label file named by the entry exists in ``base_dir`` (default
    ``weights_dir()``) with ``num_classes`` names, and that a bundled file exists with the recorded size.
    """
    base = Path(base_dir) if base_dir is not None else weights_dir()
    if not isinstance(name, str) or not re.fullmatch(_NAME_RE, name):
        raise ValueError(f"weights name {name!r} must be 'arch.tag' (letters, digits, '_'; '-' allowed in the tag)")
    if not isinstance(entry, Mapping):
        _fail(name, "must be a JSON object")
    unknown = set(entry) - _KNOWN_FIELDS
    if unknown:
        _fail(name, f"unknown field(s) {', '.join(sorted(unknown))}; known fields: {', '.join(_FIELD_ORDER)}")
    for field in ("status", "source", "num_classes", "input_size", "interpolation", "crop_pct", "mean", "std"):
        if field not in entry:
            _fail(name, f"missing required field {field!r}")
    if entry["status"] not in STATUSES:
        _fail(name, f"status={entry['status']!r} must be one of {', '.join(STATUSES)}")
    _check_source(name, entry["source"])
    published = entry["status"] == "published"
    sha, size = entry.get("sha256"), entry.get("size")
    if sha is not None and (not isinstance(sha, str) or not re.fullmatch(_SHA256_RE, sha)):
        _fail(name, f"sha256={sha!r} must be the full 64-digit lower-case hex SHA-256 of the file")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        _fail(name, f"size={size!r} must be the file's size in bytes (a positive int)")
    if published and (sha is None or size is None):
        _fail(name, "a published entry needs its file's sha256 and size, so that downloads can be verified")
    if not isinstance(entry.get("default", False), bool):
        _fail(name, f"default={entry['default']!r} must be true or false")
    num_classes = entry["num_classes"]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        _fail(name, f"num_classes={num_classes!r} must be a positive int")
    size3 = entry["input_size"]
    if not (isinstance(size3, list) and len(size3) == 3 and all(isinstance(v, int) and v > 0 for v in size3)):
        _fail(name, f"input_size={size3!r} must be [channels, height, width] of positive ints")
    _check_number_list(name, "mean", entry["mean"], size3[0])
    _check_number_list(name, "std", entry["std"], size3[0], positive=True)
    if entry["interpolation"] not in INTERPOLATIONS:
        _fail(name, f"interpolation={entry['interpolation']!r} must be one of {', '.join(INTERPOLATIONS)}")
    crop = entry["crop_pct"]
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
        _fail(name, f"crop_pct={crop!r} must be in (0, 1]: the centre crop's share of the resized image")
    if entry.get("crop_mode", "center") != "center":
        _fail(name, f"crop_mode={entry['crop_mode']!r}: only 'center' is supported")
    if not isinstance(entry.get("model_args", {}), dict):
        _fail(name, f"model_args={entry['model_args']!r} must be an object of builder keyword arguments")
    for field in ("dataset", "license", "notes"):
        if field in entry and not isinstance(entry[field], str):
            _fail(name, f"{field}={entry[field]!r} must be a string")
    metrics = entry.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            _fail(name, f"metrics={metrics!r} must be an object such as {{'top1': 76.1, 'top5': 92.9, 'command': ...}}")
        for key in ("top1", "top5"):
            value = metrics.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                _fail(name, f"metrics.{key}={value!r} must be a number (percent) or null")
        if any(metrics.get(k) is not None for k in ("top1", "top5")) and not metrics.get("command"):
            _fail(name, "metrics need the 'command' that measured them")
    if "origin" in entry and not isinstance(entry["origin"], dict):
        _fail(name, f"origin={entry['origin']!r} must be an object with the 'command' that produced the weights")
    labels = entry.get("label_names")
    if labels is not None:
        if isinstance(labels, list):
            if not all(isinstance(n, str) for n in labels):
                _fail(name, "label_names must be strings")
            count = len(labels)
        elif isinstance(labels, str):
            count = None
            if check_files:
                path = base / labels
                if not path.is_file():
                    _fail(name, f"label_names names {labels!r}, which is not a file in {base}")
                count = len(_read_label_file(str(path), path.stat().st_mtime_ns))
        else:
            _fail(name, "label_names must be a list of names or the name of a JSON file in weights/")
        if count is not None and count != num_classes:
            _fail(name, f"label_names has {count} names but num_classes is {num_classes}")
    source = entry["source"]
    if check_files and source["type"] == "bundled" and published:
        path = base / source["path"]
        if not path.is_file():
            _fail(name, f"bundled file {path} is missing")
        if path.stat().st_size != size:
            _fail(name, f"bundled file {path} has {path.stat().st_size} bytes, the entry says {size}")


def validate_manifest(
    data: Mapping[str, Any], check_files: bool = True, base_dir: str | os.PathLike[str] | None = None
) -> None:
    """Validate a whole manifest: the top level, every entry, and at most one default per arch.

    Label files and bundled weights are looked up in ``base_dir`` (default ``weights_dir()``).
    """
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA or not isinstance(data.get("weights"), dict):
        raise ValueError(f"a manifest is an object with schema={SCHEMA} and a 'weights' object")
    defaults: dict[str, list[str]] = {}
    for name, entry in data["weights"].items():
        validate_entry(name, entry, check_files=check_files, base_dir=base_dir)
        if entry.get("default"):
            defaults.setdefault(name.split(".")[0], []).append(name)
    for arch, names in defaults.items():
        if len(names) > 1:
            raise ValueError(f"{arch} has more than one default set of weights: {', '.join(names)}")


_SOURCE_ORDER = ("type", "repo_id", "filename", "revision", "url", "path")


def _ordered_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    def sort_nested(value: Any) -> Any:
        return {k: sort_nested(value[k]) for k in sorted(value)} if isinstance(value, dict) else value

    out = {k: sort_nested(entry[k]) for k in _FIELD_ORDER if k in entry}
    if isinstance(out.get("source"), dict):
        src = out["source"]
        out["source"] = {k: src[k] for k in sorted(src, key=lambda k: (_SOURCE_ORDER + (k,)).index(k))}
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
    name: str, entry: Mapping[str, Any], path: str | os.PathLike[str] | None = None, merge: bool = False
) -> dict[str, Any]:
    """Add or replace the manifest entry ``name`` (``arch.tag``) and write the manifest atomically.

    With ``merge=True`` the given fields update an existing entry instead of replacing it. The result
    is validated before anything is written; an entry marked ``"default": true`` takes the default
    flag from the arch's other entries. A file lock serialises concurrent writers. Returns the entry.
    """
    from filelock import FileLock

    target = Path(path) if path is not None else manifest_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            with open(target, encoding="utf-8") as f:
                data = json.load(f)
        else:
            data = {"schema": SCHEMA, "hub_org": DEFAULT_HUB_ORG, "weights": {}}
        weights = dict(data.get("weights", {}))
        new = {**weights.get(name, {}), **entry} if merge else dict(entry)
        if new.get("default"):
            arch = name.split(".")[0]
            for other, e in weights.items():
                if other != name and other.split(".")[0] == arch and e.get("default"):
                    weights[other] = {k: v for k, v in e.items() if k != "default"}
        weights[name] = new
        write_manifest({**data, "weights": weights}, target)
    return new
