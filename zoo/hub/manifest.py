"""The weights manifest (``weights/manifest.json``): one entry per ``arch.tag``.

The manifest is the single description of every set of pretrained weights: where the file lives, its
SHA-256 and size, and the preprocessing, labels, metrics, licence and provenance that go with it. The
registry, ``zoo info``, the docs tables and the loader all read it; nothing repeats it by hand.

An entry, as :class:`~zoo.hub.entry.WeightsEntry` defines it (field order, types, valid values)::

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

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from zoo.errors import ManifestError
from zoo.hub.entry import INTERPOLATIONS, SOURCE_TYPES, STATUSES, Source, WeightsEntry, relative_path_problem
from zoo.utils import natural_key
from zoo.utils.files import parse_json, write_text_atomic

__all__ = [
    "DEFAULT_HUB_ORG", "INTERPOLATIONS", "SCHEMA", "SOURCE_TYPES", "STATUSES", "Source", "WeightsEntry",
    "bundled_path", "check_name", "default_tag", "describe_source", "dumps", "entries_for_arch", "get_entry",
    "hub_org", "label_names", "resolve", "resolve_sources", "describe",
    "load_manifest", "manifest_path", "resolve_source", "update_entry", "validate_entry", "validate_manifest",
    "weight_names", "weights_dir", "write_manifest",
]  # fmt: skip

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
