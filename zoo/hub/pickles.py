"""Reading ``torch.save`` checkpoints for their tensors only (``weights_only=True``: no code is ever run).

Used by every path that takes a ``.pth``/``.pt``: conversion from torchvision and timm, a torchvision
download, ``zoo eval`` of a training checkpoint and ``--resume``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from zoo.errors import WeightsFileError

__all__ = ["read_pickle_checkpoint", "strip_wrapper_prefix", "unpickling_problem"]

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
