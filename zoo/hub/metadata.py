"""What zoo writes into a safetensors header beside the tensors: :class:`WeightsMetadata`.

The header's metadata is a map of strings to strings. Each field of ``WeightsMetadata`` names its key
once (``zoo.pretrained_cfg``, ``zoo.model_args``, ...) and how its value is stored (a plain string, an
int, a float or JSON); every module that writes or reads these keys goes through this class. Keys zoo
wrote under older names are still read. Other keys (e.g. safetensors' ``format``, or a user's own)
are kept in ``extra`` as they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from zoo.errors import WeightsFileError
from zoo.hub.entry import INTERPOLATIONS, MAX_INPUT_SIDE, MAX_RESIZE_SIDE
from zoo.utils.files import parse_json

__all__ = ["SOURCE_KEYS", "WeightsMetadata", "check_preprocessing", "jsonable", "without_source"]

# Where a model's weights came from (timm's keys, and zoo's file and tag): true of that file only. A new head
# or a new file (save_weights, a run's config.json, zoo publish) is not that file, so these are dropped, as
# timm's filter_pretrained_cfg(remove_source=True) does.
SOURCE_KEYS = ("file", "sha256", "source", "url", "hf_hub_id", "hf_hub_filename", "tag")


def without_source(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the keys that name the file its weights came from (:data:`SOURCE_KEYS`)."""
    return {k: v for k, v in cfg.items() if k not in SOURCE_KEYS}


# What each kind of field must hold once parsed (a header is untrusted: JSON can hold anything).
_KIND_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (float,), "json": (dict,)}


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
        """Read a header's metadata; a value that does not parse is a WeightsFileError naming its key."""
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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_preprocessing(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A ``pretrained_cfg`` read from a file, with every preprocessing value checked; a WeightsFileError names
    the first one that is not sane (``input_size`` of positive ints no larger than ``MAX_INPUT_SIDE``, ``mean``
    and ``std`` finite with one value per channel and ``std > 0``, ``crop_pct`` in (0, 1], a known
    ``interpolation``, a positive ``num_classes``, ``label_names`` a list of strings)."""
    out = dict(cfg)
    where = "the zoo metadata zoo.pretrained_cfg"
    size = out.get("input_size")
    if size is not None:
        ints = isinstance(size, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        if not (ints and len(size) == 3 and min(size) > 0):
            raise WeightsFileError(
                f"{where} has input_size={size!r}: it must be [channels, height, width] of positive ints"
            )
        if max(size[1:]) > MAX_INPUT_SIDE or size[0] > 64:
            raise WeightsFileError(
                f"{where} has input_size={list(size)}: sides of at most {MAX_INPUT_SIDE} pixels and at most 64 channels"
            )
    for key in ("mean", "std"):
        values = out.get(key)
        if values is None:
            continue
        if not (isinstance(values, (list, tuple)) and values and all(_is_number(v) for v in values)):
            raise WeightsFileError(f"{where} has {key}={values!r}: it must be a list of finite numbers")
        if key == "std" and not all(v > 0 for v in values):
            raise WeightsFileError(f"{where} has std={list(values)!r}: every value must be positive")
        if size is not None and len(values) != size[0]:
            raise WeightsFileError(
                f"{where} has {key}={list(values)} for {size[0]} input channel(s): one value per channel"
            )
    crop = out.get("crop_pct")
    if crop is not None and not (_is_number(crop) and 0 < crop <= 1):
        raise WeightsFileError(f"{where} has crop_pct={crop!r}: it must be in (0, 1]")
    if crop is not None and size is not None and max(size[1:]) / crop > MAX_RESIZE_SIDE:
        raise WeightsFileError(
            f"{where} has crop_pct={crop!r}: with input_size {list(size)} it resizes beyond {MAX_RESIZE_SIDE} pixels"
        )
    if out.get("interpolation") is not None and out["interpolation"] not in INTERPOLATIONS:
        raise WeightsFileError(f"{where} has interpolation={out['interpolation']!r}: use {', '.join(INTERPOLATIONS)}")
    classes = out.get("num_classes")
    if classes is not None and not (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 0):
        raise WeightsFileError(f"{where} has num_classes={classes!r}: it must be a non-negative int")
    labels = out.get("label_names")
    if labels is not None and not (isinstance(labels, (list, tuple)) and all(isinstance(n, str) for n in labels)):
        raise WeightsFileError(f"{where} has label_names of type {type(labels).__name__}: it must be a list of names")
    return out


def _parse(key: str, text: str, kind: str) -> Any:
    value: Any = text
    try:
        if kind == "json":
            value = parse_json(text)
        elif kind == "int":
            value = int(text)
        elif kind == "float":
            value = float(text)
    except ValueError:
        raise WeightsFileError(
            f"the zoo metadata {key}={text!r} in the file's header is not a valid {kind} value"
        ) from None
    if not isinstance(value, _KIND_TYPES[kind]):
        raise WeightsFileError(f"the zoo metadata {key}={text!r} in the file's header must be a JSON object")
    return value
