"""Print the lowest versions pyproject.toml allows of the libraries zoo calls into beyond torch, as pip pins.

    make test-floors        # installs these beside the venv's packages and runs the tests that use them

torch and torchvision are not included: a build of each is a large download, and constraints.txt holds the
versions every test run uses. huggingface_hub 1.x talks HTTP through httpx (2.x through httpx2), so
``make test-floors`` installs httpx beside them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FLOORED = ("timm", "huggingface_hub", "safetensors")


def floor_pins(pyproject: Path) -> list[str]:
    """``name==version`` for each library of ``FLOORED`` from its ``>=`` bound in ``pyproject``."""
    text = pyproject.read_text(encoding="utf-8")  # (tomllib is 3.11+; zoo supports 3.10)
    pins = []
    for name in FLOORED:
        bound = re.search(rf'^\s*"{name}\s*>=\s*([\w.]+)"', text, flags=re.MULTILINE)
        if bound is None:
            sys.exit(f"pyproject.toml has no `{name}>=VERSION` dependency")
        pins.append(f"{name}=={bound.group(1)}")
    return pins


def check_imported(pins: list[str]) -> None:
    """Exit with a message unless the importable versions are the pinned ones (the floors are on the path)."""
    from importlib import import_module

    for pin in pins:
        name, _, want = pin.partition("==")
        if want:
            got = import_module(name).__version__
            if got != want:
                sys.exit(f"{name} {got} is imported, not the floor {want}: put the floors first on PYTHONPATH")
            print(f"{name} {got}")


if __name__ == "__main__":
    floors = floor_pins(Path(__file__).resolve().parent.parent / "pyproject.toml")
    if sys.argv[1:] == ["--check"]:
        check_imported(floors)
    else:
        print(" ".join(floors))
