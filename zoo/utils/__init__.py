"""Small utilities every layer of zoo may use: atomic files, natural sorting and progress bars."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import Any

from zoo.utils.files import atomic_path, fsync_dir, write_json, write_text_atomic

__all__ = ["atomic_path", "env_flag", "fsync_dir", "natural_key", "progress", "write_json", "write_text_atomic"]

_TRUE = ("1", "true", "yes", "on")


def env_flag(*names: str) -> bool:
    """True when any of the environment variables ``names`` is set to 1/true/yes/on (any case)."""
    return any(os.environ.get(n, "").strip().lower() in _TRUE for n in names)


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders numbers by value: resnet18 < resnet34 < resnet101, as timm sorts."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def progress(iterable: Iterable | None = None, **kwargs: Any) -> Any:
    """A tqdm bar that stays silent when stderr is not a terminal (logs, CI, subprocesses)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
