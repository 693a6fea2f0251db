"""The weights manifest (``weights/manifest.json``): one entry per ``arch.tag``."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any


def weights_dir() -> Path:
    """The folder holding the manifest and bundled weights.

    A source checkout keeps it at the top level (``weights/``); an installed package has it as
    ``zoo/weights``. ``ZOO_WEIGHTS_DIR`` overrides both.
    """
    env = os.environ.get("ZOO_WEIGHTS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "weights", here / "weights"):
        if (candidate / "manifest.json").is_file():
            return candidate
    return here.parent / "weights"


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_manifest() -> dict[str, Any]:
    """The parsed manifest (re-read when the file changes)."""
    path = weights_dir() / "manifest.json"
    if not path.is_file():
        return {"schema": 1, "weights": {}}
    return _load(str(path), path.stat().st_mtime_ns)


def weight_names() -> list[str]:
    """Every ``arch.tag`` in the manifest."""
    return sorted(load_manifest()["weights"])
