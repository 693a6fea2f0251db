"""The model registry: architecture names and their builders. A model name is ``arch`` or ``arch.tag`` (timm's
convention): ``arch`` picks the builder, ``tag`` one set of weights for it from the manifest in ``weights/``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

import torch.nn as nn

from zoo.errors import ArgumentValueError
from zoo.utils import natural_key

_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name (``@register_model``); a name is registered once."""
    name = fn.__name__
    if "." in name:
        raise ArgumentValueError(f"model name {name!r} must not contain '.': the part after a dot is a weights tag")
    if name in _entrypoints:
        raise ArgumentValueError(
            f"model {name!r} is already registered (by {_entrypoints[name].__module__}); pick another function name"
        )
    _entrypoints[name] = fn
    return fn


def split_model_name_tag(name: str) -> tuple[str, str]:
    """Split ``"resnet50.tv2_in1k"`` into ``("resnet50", "tv2_in1k")``; a bare arch gives an empty tag."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(
            f"a model name must be a non-empty string such as 'resnet50' or 'resnet50.tv2_in1k', got {name!r}; "
            "`zoo.list_models()` lists them"
        )
    arch, _, tag = name.partition(".")
    return arch, tag


def filter_names(
    names: Iterable[str],
    filter: str | Iterable[str] = "",
    exclude_filters: str | Iterable[str] = (),  # noqa: A002
) -> list[str]:
    """``names`` in natural order that match a ``filter`` pattern (``"resnet*"``, or a list) and no excluded one."""
    include = [filter] if isinstance(filter, str) else list(filter)
    exclude = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    names = sorted(names, key=natural_key)
    if any(include):
        names = [n for n in names if any(p and fnmatch.fnmatchcase(n, p) for p in include)]
    return [n for n in names if not any(p and fnmatch.fnmatchcase(n, p) for p in exclude)]


def list_archs(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = ()) -> list[str]:  # noqa: A002
    """Registered architecture names in natural order, filtered as :func:`filter_names` does."""
    return filter_names(_entrypoints, filter, exclude_filters)


def is_model(name: str) -> bool:
    """True if the architecture part of ``name`` is registered."""
    return split_model_name_tag(name)[0] in _entrypoints


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder function registered for the architecture part of ``name``."""
    arch = split_model_name_tag(name)[0]
    if arch not in _entrypoints:
        close = difflib.get_close_matches(arch, list(_entrypoints), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ArgumentValueError(f"unknown model {arch!r}.{hint} `zoo.list_models()` lists the registered models.")
    return _entrypoints[arch]


def model_summary_line(name: str) -> str:
    """The first line of a builder's docstring, for listings."""
    doc = model_entrypoint(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def get_arch_module(name: str) -> str:
    """The module that registered ``name`` (its model family)."""
    return model_entrypoint(name).__module__


def registered() -> dict[str, Any]:
    """A read-only view of name -> builder, for tools that walk the registry."""
    return dict(_entrypoints)
