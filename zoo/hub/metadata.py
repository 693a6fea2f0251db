"""What zoo writes into a safetensors header beside the tensors: :class:`WeightsMetadata`.

The header's metadata is a map of strings to strings. Each field of ``WeightsMetadata`` names its key
once (``zoo.pretrained_cfg``, ``zoo.model_args``, ...) and how its value is stored (a plain string, an
int, a float or JSON); every module that writes or reads these keys goes through this class. Keys zoo
wrote under older names are still read. Other keys (e.g. safetensors' ``format``, or a user's own)
are kept in ``extra`` as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["WeightsMetadata", "jsonable"]


def _key(key: str, kind: str, *aliases: str) -> Any:
    """A field stored under header ``key`` as ``kind`` (str, int, float or json); ``aliases``: older names."""
    return field(default=None, metadata={"key": key, "kind": kind, "aliases": aliases})


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, mapping keys as strings and anything else that JSON lacks as a string."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


@dataclass(frozen=True, kw_only=True)
class WeightsMetadata:
    """zoo's metadata in a safetensors file; ``None`` fields are not written."""

    #: the registered architecture the tensors belong to (``zoo convert`` wrote it as ``zoo.arch``, ``zoo train``
    #: as ``architecture``)
    architecture: str | None = _key("zoo.architecture", "str", "zoo.arch", "architecture")
    tag: str | None = _key("zoo.tag", "str")  #: the weights tag (``arch.tag``), for published files
    num_classes: int | None = _key("zoo.num_classes", "int")
    #: the model's pretrained_cfg: ``create_model(arch, checkpoint_path=...)`` takes preprocessing and classes from it
    pretrained_cfg: dict[str, Any] | None = _key("zoo.pretrained_cfg", "json")
    #: builder keyword arguments the tensors need (e.g. ``{"stem": "cifar"}``), used as defaults when loading
    model_args: dict[str, Any] | None = _key("zoo.model_args", "json")
    source: str | None = _key("zoo.source", "str")  #: the upstream weights a conversion came from
    epoch: int | None = _key("zoo.epoch", "int", "epoch")  #: the training epoch the weights are from
    metric: float | None = _key("zoo.metric", "float", "metric")  #: the validation top-1 they reached
    extra: dict[str, str] = field(default_factory=dict)  #: any other header keys, as they are

    @classmethod
    def keys(cls) -> dict[str, str]:
        """``field -> header key`` for every field stored under a key of zoo's."""
        return {f.name: f.metadata["key"] for f in fields(cls) if "key" in f.metadata}

    def to_header(self) -> dict[str, str]:
        """The header metadata (string values), keys sorted; an ``extra`` key never replaces one of zoo's."""
        header: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or "key" not in f.metadata:
                continue
            kind = f.metadata["kind"]
            if kind == "json":
                text = json.dumps(jsonable(value), sort_keys=True)
            elif kind == "float":
                text = repr(float(value))
            else:
                text = str(value)
            header[f.metadata["key"]] = text
        for key, value in self.extra.items():
            header.setdefault(str(key), value if isinstance(value, str) else json.dumps(jsonable(value)))
        return dict(sorted(header.items()))

    @classmethod
    def from_header(cls, header: Mapping[str, str] | None) -> WeightsMetadata:
        """Read a header's metadata; a value that does not parse is a ValueError naming its key."""
        header = dict(header or {})
        values: dict[str, Any] = {}
        for f in fields(cls):
            if "key" not in f.metadata:
                continue
            for key in (f.metadata["key"], *f.metadata["aliases"]):
                if key not in header:
                    continue
                text = header.pop(key)
                if f.name in values:  # the current key was found first; an older one is dropped
                    continue
                values[f.name] = _parse(key, text, f.metadata["kind"])
        return cls(**values, extra=header)


def _parse(key: str, text: str, kind: str) -> Any:
    try:
        if kind == "json":
            return json.loads(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"the zoo metadata {key}={text!r} in the file's header is not a valid {kind} value") from None
    return text
