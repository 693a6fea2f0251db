"""Weight files: safetensors read and written (pickles refused), zoo's metadata in their header
(:class:`WeightsMetadata`, each field under ``zoo.<field>``), and the weights-only pickle reader.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError, WeightsFileError
from zoo.models.cfg import without_source
from zoo.pretrained.cache import mark, sha256_file
from zoo.utils.checks import Invalid, int_in, json_object, number_in, regular_file, reported, text
from zoo.utils.files import atomic_path, parse_json

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pkl", ".ckpt", ".tar")
_EMA_KEYS = ("state_dict_ema", "model_ema")
_PICKLE_WRAPPERS = ("state_dict", "model_state_dict", "model", "module")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # what DDP/DataParallel and torch.compile put before every key


def strip_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the prefixes DDP (``module.``) and torch.compile (``_orig_mod.``) add, in any order and nesting."""

    def clean(key: str) -> str:
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        return key

    return {clean(k): v for k, v in state.items()}


def unpickling_problem(error: BaseException) -> str:
    """The line of a ``torch.load(weights_only=True)`` error that says what was refused (torch's is a page)."""
    text = " ".join(str(error).split())
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s*(?:Please use|Check the documentation)|$)", text)
    detail = found.group(1) if found else (text or type(error).__name__)
    return detail if len(detail) <= 200 else detail[:197] + "..."


def read_pickle_checkpoint(path: str | os.PathLike[str], prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save`` file, read with ``weights_only=True`` (no code is run): a training
    checkpoint's model under ``state_dict``/``model``/..., with ``prefer_ema`` its EMA weights; wrapper prefixes go."""
    import argparse

    with reported("the checkpoint", WeightsFileError):
        regular_file("the checkpoint", path)
    try:  # argparse.Namespace allowed, as timm's load_state_dict does: timm's checkpoints hold their arguments
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for anything not plain tensors
        raise WeightsFileError(
            f"{path} could not be read with torch.load(weights_only=True), which reads tensors only, never code: "
            f"{unpickling_problem(e)}",
            hint="it holds more than tensors (code, custom classes) or is damaged",
        ) from None
    if isinstance(obj, Mapping):
        ema = obj.get("ema") if prefer_ema and obj.get("eval_weights") == "ema" else None
        keys = (*_EMA_KEYS, *_PICKLE_WRAPPERS) if prefer_ema else _PICKLE_WRAPPERS
        obj = ema or next((obj[k] for k in keys if isinstance(obj.get(k), Mapping)), obj)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(f"{path} does not hold a state dict (names to tensors)", hint="give a model's weights")
    return strip_wrapper_prefix(obj)


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, keys as strings and anything JSON lacks as a string."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


@dataclass(frozen=True, kw_only=True)
class WeightsMetadata:
    """zoo's metadata in a safetensors header, each field under ``zoo.<field>``; None fields are not written."""

    architecture: str | None = None  #: the registered architecture the tensors belong to
    tag: str | None = None  #: the weights tag, for published files
    num_classes: int | None = None
    pretrained_cfg: dict[str, Any] | None = None  #: preprocessing and classes: what checkpoint_path= builds with
    model_args: dict[str, Any] | None = None  #: builder arguments the tensors need (``{"stem": "cifar"}``)
    source: str | None = None  #: the upstream weights a conversion came from
    epoch: int | None = None  #: the training epoch of the weights
    metric: float | None = None  #: the validation top-1 that chose them
    extra: dict[str, str] = field(default_factory=dict)  #: any other header keys, as they are

    def __post_init__(self) -> None:
        # A name from a file becomes a model name: never a folder (local-dir:), a Hub repo (hf-hub:) or a path.
        if self.architecture is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,127}", str(self.architecture)):
            raise Invalid("architecture", self.architecture, "must be a registered architecture's name")
        for name in ("architecture", "tag", "source"):
            if getattr(self, name) is not None:
                text(name, getattr(self, name), 256)
        for name in ("num_classes", "epoch"):
            if getattr(self, name) is not None:
                int_in(name, getattr(self, name), 0)
        if self.metric is not None:
            number_in("metric", self.metric, 0, 100)
        for name in ("pretrained_cfg", "model_args"):
            if getattr(self, name) is not None:
                json_object(name, getattr(self, name))

    def to_header(self) -> dict[str, str]:
        """The header's string map, keys sorted; an ``extra`` key never replaces one of zoo's."""
        header = {
            str(k): v if isinstance(v, str) else json.dumps(jsonable(v), sort_keys=True) for k, v in self.extra.items()
        }
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and f.name != "extra":
                header[f"zoo.{f.name}"] = json.dumps(jsonable(value), sort_keys=True)
            elif value is not None and f.name != "extra":
                header[f"zoo.{f.name}"] = repr(float(value)) if f.name == "metric" else str(value)
        return dict(sorted(header.items()))

    @classmethod
    def from_header(cls, header: Mapping[str, str] | None, where: str = "the file's header") -> WeightsMetadata:
        """A header's metadata; a value that is not what its field holds is a WeightsFileError naming the key."""
        extra, values = dict(header or {}), {}
        with reported(where, WeightsFileError, hint="the file's metadata is damaged; fix or remove it"):
            for f in dataclasses.fields(cls):
                raw = extra.pop(f"zoo.{f.name}", None)
                if raw is None or f.name == "extra":
                    continue
                kind = str(f.type).split(" |")[0]  # "str", "int", "float" or "dict[str, Any]"
                try:
                    values[f.name] = {"int": int, "float": float}.get(kind, parse_json if kind != "str" else str)(raw)
                except ValueError:
                    must = {"int": "an int", "float": "a number"}.get(kind, "a JSON object")
                    raise Invalid(f"zoo.{f.name}", raw, f"must be {must}") from None
            return cls(**values, extra=extra)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> WeightsMetadata:
        """The metadata of the safetensors file ``path``; errors name the file."""
        return cls.from_header(read_metadata(path), f"{path}: the header")


class SavedWeights(NamedTuple):
    """What :func:`save_weights` wrote."""

    path: Path
    sha256: str
    size: int


def save_weights(
    obj: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: WeightsMetadata | Mapping[str, Any] | None = None,
) -> SavedWeights:
    """Write a model's (or a state dict's) tensors to a safetensors file, atomically and reproducibly, with the
    model's ``pretrained_cfg`` (less the keys naming the file it came from) in its header, so that
    ``create_model(arch, checkpoint_path=path)`` gets its preprocessing and classes back; ``metadata`` may also be
    a mapping of header keys."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    state = obj.state_dict() if isinstance(obj, nn.Module) else dict(obj)
    cfg = getattr(obj, "pretrained_cfg", None) if isinstance(obj, nn.Module) else None
    meta = metadata if isinstance(metadata, WeightsMetadata) else WeightsMetadata(extra=dict(metadata or {}))
    if cfg and meta.pretrained_cfg is None:
        meta = dataclasses.replace(meta, pretrained_cfg=without_source(cfg))
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.is_meta:
            raise ArgumentValueError(f"{key} is on the meta device and has no values to save")
        t = tensor.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in storages:  # safetensors refuses tensors that share memory
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata={"format": "pt", **meta.to_header()})
        except SafetensorError as e:  # a full disk comes as "I/O error: ... (os error 28)": the OSError it is
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            number = int(code.group(1))
            raise OSError(number, os.strerror(number) if number in errno.errorcode else str(e), str(path)) from None
        _sort_header(tmp)
    sha = sha256_file(path)
    mark(path, sha256=sha)
    return SavedWeights(path, sha, path.stat().st_size)


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with its metadata in sorted order: safetensors writes it in hash order, and the
    same tensors must give the same bytes, so that a conversion's SHA-256 can be reproduced."""
    with open(path, "rb+") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        data = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) <= length:  # same entries, same length; the header is padded with spaces
            f.seek(8)
            f.write(data + b" " * (length - len(data)))


def _check_safetensors(path: Path) -> None:
    """Refuse pickles, folders, FIFOs, devices and anything else that is not a safetensors file."""
    with reported("the weights file", WeightsFileError, hint="give a .safetensors file"):
        regular_file("the weights file", path)
    with open(path, "rb") as f:
        head = f.read(9)
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if 0 < header_len <= path.stat().st_size - 8 and head[8:9] == b"{":
        return
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        raise WeightsFileError(
            f"{path} is a pickle checkpoint (torch.save format); zoo loads only safetensors files, because "
            "unpickling a file can run arbitrary code",
            hint=f"convert it once with `zoo convert checkpoint {path} --model ARCH` (tensors only, weights_only=True) "
            "and load the .safetensors file it writes",
        )
    raise WeightsFileError(f"{path} is not a safetensors file", hint="give a .safetensors file")


def _open(path: str | os.PathLike[str], read: Any) -> Any:
    from safetensors import SafetensorError

    path = Path(path)
    _check_safetensors(path)
    try:
        return read(path)
    except (SafetensorError, OverflowError, ValueError) as e:
        raise WeightsFileError(f"{path} is not a valid safetensors file: {e}", hint="the file is damaged") from None


def load_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, memory-mapped (pickles are refused)."""
    from safetensors.torch import load_file as load

    return _open(path, load)


def is_zoo_weights(path: Path) -> bool:
    """Whether ``path`` is a safetensors file zoo wrote (its header names the architecture): one zoo may replace."""
    try:
        return "zoo.architecture" in read_metadata(path)
    except (ValueError, OSError):
        return False


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file's header."""
    from safetensors import safe_open

    def read(p: Path) -> dict[str, str]:
        with safe_open(p, framework="pt") as f:
            return dict(f.metadata() or {})

    return _open(path, read)
