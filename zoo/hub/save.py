"""Saving weights: a model's or a state dict's tensors as a reproducible, verified safetensors file."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError
from zoo.hub.metadata import WeightsMetadata, jsonable, without_source
from zoo.hub.verify import mark_verified, sha256_file
from zoo.utils.files import atomic_path

__all__ = ["SavedWeights", "save_weights"]


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
