"""The package layout: one-way imports between packages and, inside each, among sibling modules (import-linter's
layers and acyclic-siblings contracts in pyproject.toml), and no private names across modules. Cohesion, not a
line count, decides how long a module is."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zoo"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_private_name_is_imported_from_another_module():
    offences = []
    for path in _modules():
        here = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zoo") and node.level == 0:
                if node.module == here:
                    continue
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                hidden_module = any(part.startswith("_") for part in node.module.split("."))
                if private or hidden_module:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {private}")
    assert not offences, "\n".join(offences)


@pytest.mark.slow
def test_every_subpackage_is_importable_alone_and_zoo_stays_light():
    code = (
        "import sys, zoo\n"
        "heavy = [m for m in ('torchvision', 'timm', 'huggingface_hub') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import zoo.cli, zoo.data, zoo.evaluation, zoo.predict, zoo.publish\n"
        "import zoo.pretrained.convert, zoo.pretrained.load\n"
        "import zoo.training\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")
def test_import_contracts_hold():
    res = subprocess.run([str(LINT_IMPORTS)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "broken" in res.stdout and "0 broken" in res.stdout


# A bare ValueError reaches the command line as a bug (a traceback): the boundary prints only ZooError and
# OSError as one line. These two are internal: callers re-raise the first as the right zoo type; the second is
# reached only by a bug. (A bare TypeError stays right for a Python caller passing the wrong type.)
INTERNAL_RAISES = {"zoo/utils/files.py", "zoo/pretrained/fetch.py"}


def test_bad_input_is_raised_as_a_zoo_error_not_a_bare_value_error():
    offences = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
                continue
            name = getattr(node.exc.func, "id", None)
            if name == "ValueError" and rel not in INTERNAL_RAISES:
                offences.append(f"{rel}:{node.lineno} raise {name}(...)")
    assert not offences, "raise one of zoo.errors' types instead:\n" + "\n".join(offences)


def test_the_trainer_is_one_class_built_from_plain_parts():
    from zoo.training import Trainer
    from zoo.training.checkpoint import RunState
    from zoo.training.components import Components

    # No mixins: its parts are functions and small objects of components/checkpoint/reporting, in the order
    # import-linter checks.
    assert Trainer.__bases__ == (object,)
    assert {"parts", "state"} <= set(Trainer._run.__code__.co_names)
    assert Components.__bases__ == RunState.__bases__ == (object,)


def test_every_subpackage_is_reachable_as_an_attribute_of_zoo():
    import zoo

    packages = {p.name for p in (ROOT / "zoo").iterdir() if (p / "__init__.py").is_file() or p.suffix == ".py"}
    public = {p.removesuffix(".py") for p in packages if not p.startswith("_")}
    assert public == set(zoo._SUBMODULES)
    for name in zoo._SUBMODULES:
        assert getattr(zoo, name).__name__ == f"zoo.{name}"
