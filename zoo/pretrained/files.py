"""Weight files: safetensors read and written, what zoo keeps in their header, and the pickle reader.

Only safetensors files are loaded into models: :func:`load_file` refuses a pickle by its name or its first
bytes. :func:`read_pickle_checkpoint` reads ``torch.save`` files for their tensors only
(``weights_only=True``: no code is ever run), for conversion from torchvision and timm, a torchvision
download, ``zoo eval`` of a training checkpoint and ``--resume``.

The header's metadata is a map of strings to strings. Each field of :class:`WeightsMetadata` names its key
once (``zoo.pretrained_cfg``, ``zoo.model_args``, ...) and how its value is stored (a plain string, an int,
a float or JSON); every module that writes or reads these keys goes through it. Keys zoo wrote under older
names are still read; other keys (safetensors' ``format``, a user's own) are kept in ``extra`` as they are.
:func:`save_weights` writes a model's or a state dict's tensors as a reproducible file, atomically.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError, WeightsFileError
from zoo.models.cfg import without_source
from zoo.pretrained.cache import mark_verified, sha256_file
from zoo.utils import shorten
from zoo.utils.files import atomic_path, parse_json

__all__ = [
    "PICKLE_SUFFIXES",
    "SavedWeights",
    "WeightsMetadata",
    "jsonable",
    "load_file",
    "read_metadata",
    "read_pickle_checkpoint",
    "save_weights",
    "strip_wrapper_prefix",
    "unpickling_problem",
]


_EMA_KEYS = ("state_dict_ema", "model_ema")
_PICKLE_WRAPPERS = ("state_dict", "model_state_dict", "model", "module")
# What DataParallel/DDP and torch.compile put before every key of a state dict saved from the wrapper.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the key prefixes that DataParallel/DDP (``module.``) and torch.compile (``_orig_mod.``) add, in
    either order and nested (``_orig_mod.module.``): what timm's ``clean_state_dict`` does from timm 1.0.31;
    older timm strips only ``module.`` then ``_orig_mod.``, so zoo does not depend on its version."""

    def clean(key: str) -> str:
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        return key

    return {clean(k): v for k, v in state.items()}


def _model_state(obj: Any, prefer_ema: bool) -> Any:
    """The model's state dict inside a loaded checkpoint object."""
    if not isinstance(obj, Mapping):
        return obj
    if prefer_ema:
        if obj.get("eval_weights") == "ema" and obj.get("ema") is not None:  # zoo train, evaluating its EMA
            return obj["ema"]
        for key in _EMA_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    for key in _PICKLE_WRAPPERS:
        if isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def unpickling_problem(error: BaseException) -> str:
    """The line of a ``torch.load(weights_only=True)`` error that says what was refused (torch's is a page)."""
    text = " ".join(str(error).split())
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s*(?:Please use|Check the documentation)|$)", text)
    detail = found.group(1) if found else (text or type(error).__name__)
    return detail if len(detail) <= 200 else detail[:197] + "..."


def read_pickle_checkpoint(path: str | os.PathLike[str], prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save`` file, read with ``weights_only=True`` (no code is run).

    A training checkpoint's model is found under ``state_dict``/``model``/...; with ``prefer_ema``, the
    EMA weights of a ``zoo train`` checkpoint that evaluated them, or of a timm one (``state_dict_ema``).
    Wrapper prefixes (``module.``, ``_orig_mod.``, in any order) are removed.
    """
    import argparse

    # One read, as timm's load_state_dict does it (argparse.Namespace allowed: timm's checkpoints hold their
    # arguments), but zoo's own checkpoint layout decides which weights are meant, which timm cannot know.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for anything not plain tensors
        raise WeightsFileError(
            f"{path} could not be read with torch.load(weights_only=True), which reads tensors only, never code: "
            f"{unpickling_problem(e)}",
            hint="it holds more than tensors (code, custom classes) or is damaged; only a checkpoint of plain "
            "tensors can be converted",
        ) from None
    state = _model_state(obj, prefer_ema)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(
            f"{path} does not hold a state dict (a mapping of names to tensors)",
            hint="give the checkpoint of a model's weights (state_dict)",
        )
    return strip_wrapper_prefix(state)


# Where a model's weights came from (timm's keys, and zoo's file and tag): true of that file only. A new head
# or a new file (save_weights, a run's config.json, zoo publish) is not that file, so these are dropped, as
# timm's filter_pretrained_cfg(remove_source=True) does.
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
            f"the zoo metadata {key}={shorten(repr(text))} in the file's header is not a valid {kind} value"
        ) from None
    if not isinstance(value, _KIND_TYPES[kind]):
        raise WeightsFileError(
            f"the zoo metadata {key}={shorten(repr(text))} in the file's header must be a JSON object"
        )
    return value


def _sort_header_metadata(f: Any) -> None:
    """Rewrite a safetensors header with its metadata in sorted order, in place.

    safetensors writes the metadata map in hash order, which changes from run to run; sorted, the same
    tensors and metadata always give the same bytes, so a conversion's SHA-256 can be reproduced.
    """
    f.seek(0)
    length = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(length))
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) <= length:  # same entries, so same length; the header is padded with spaces
        f.seek(8)
        f.write(text + b" " * (length - len(text)))
        f.flush()


class SavedWeights(NamedTuple):
    """What :func:`save_weights` wrote: the manifest's ``sha256`` and ``size`` come from here."""

    path: Path
    sha256: str
    size: int


def _header(cfg: Mapping[str, Any] | None, metadata: WeightsMetadata | Mapping[str, Any] | None) -> dict[str, str]:
    if isinstance(metadata, WeightsMetadata):
        if cfg and metadata.pretrained_cfg is None:
            metadata = replace(metadata, pretrained_cfg=dict(cfg))
        header = metadata.to_header()
    else:
        header = WeightsMetadata(pretrained_cfg=dict(cfg) if cfg else None).to_header()
        for key, value in (metadata or {}).items():
            header[str(key)] = value if isinstance(value, str) else json.dumps(jsonable(value), sort_keys=True)
    return {"format": "pt", **header}


def save_weights(
    obj: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: WeightsMetadata | Mapping[str, Any] | None = None,
) -> SavedWeights:
    """Write a model's (or a state dict's) tensors to a safetensors file, atomically.

    The file is written next to ``path`` under a temporary name, synced and renamed into place, so a
    crash never leaves a partial file at ``path``. A model's ``pretrained_cfg`` is stored in the metadata
    (:attr:`WeightsMetadata.pretrained_cfg`) so that ``create_model(arch, checkpoint_path=path)`` gets its
    preprocessing and class count back, as are the builder defaults in ``WeightsMetadata.model_args``
    (e.g. ``{"stem": "cifar"}``). ``metadata`` may also be a plain mapping of header keys: values that
    are not strings are stored as JSON.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if isinstance(obj, nn.Module):
        state = obj.state_dict()
        cfg = getattr(obj, "pretrained_cfg", None)
        cfg = without_source(cfg) if cfg else cfg  # the new file is not the one the model was loaded from
    else:
        state, cfg = dict(obj), None
    meta = _header(cfg, metadata)
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.is_meta:
            raise ArgumentValueError(f"{key} is on the meta device and has no values to save")
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        # safetensors refuses tensors that share memory (tied or aliased weights): save copies.
        if ptr in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    from safetensors import SafetensorError

    with atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=meta)
        except SafetensorError as e:
            # safetensors reports a full disk as "I/O error: ... (os error 28)": give it back as the OSError it is.
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            number = int(code.group(1))
            raise OSError(number, os.strerror(number) if number in errno.errorcode else str(e), str(path)) from None
        with open(tmp, "rb+") as f:
            _sort_header_metadata(f)
    sha = sha256_file(path)
    mark_verified(path, sha)
    return SavedWeights(path, sha, path.stat().st_size)


PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pkl", ".ckpt", ".tar")


def _check_safetensors(path: Path) -> None:
    """Refuse pickle checkpoints, folders and anything else that is not a safetensors file."""
    if path.is_dir():
        raise WeightsFileError(f"{path} is a folder, not a safetensors file", hint="give the .safetensors file in it")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} does not exist") from None
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if 0 < header_len <= size - 8 and head[8:9] == b"{":
        return
    is_pickle = path.suffix.lower() in PICKLE_SUFFIXES or head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"
    if is_pickle:
        raise WeightsFileError(
            f"{path} is a pickle checkpoint (torch.save format); zoo loads only safetensors files, because "
            "unpickling a file can run arbitrary code",
            hint=f"convert it once with `zoo convert checkpoint {path} --model ARCH` (it reads tensors only, with "
            "torch.load(weights_only=True)) and load the .safetensors file it writes; torchvision and timm weights "
            "have `zoo convert torchvision` and `zoo convert timm`",
        )
    raise WeightsFileError(
        f"{path} is not a safetensors file (its header is not a safetensors header)",
        hint="give a .safetensors file written by zoo, timm or safetensors.torch.save_file",
    )


def _broken(path: Path, error: Exception) -> WeightsFileError:
    return WeightsFileError(
        f"{path} is not a valid safetensors file: {error}", hint="the file is damaged or was not written by safetensors"
    )


def load_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, memory-mapped (pickle files are refused)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as _load

    path = Path(path)
    _check_safetensors(path)
    try:
        return _load(path)
    except (SafetensorError, OverflowError, ValueError) as e:
        raise _broken(path, e) from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _check_safetensors(path)
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OverflowError, ValueError) as e:
        raise _broken(path, e) from None
