"""Every code block in docs/ marked ``<!-- runnable -->`` runs as written, so the guides cannot rot.

Python blocks run with this interpreter, bash blocks with ``bash -e`` and this environment's ``zoo`` and
``python`` first on PATH, each in a fresh folder. ``$ZOO_REPO`` is this checkout and ``$DATA`` the real data
folder; a block that needs ``$DATA`` skips where the real data is not present.

A lab page's block marked ``<!-- runnable in lab10-N.ipynb -->`` holds commands that the lab's notebook runs
(tests/test_notebooks.py runs it on fewer images and epochs): here each of its commands is checked to be one of
the notebook's, with the notebook's full-length settings, rather than run a second time.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import notebooks  # noqa: E402

MARK = re.compile(r"^<!-- runnable(?: in (lab10-\d)\.ipynb)? -->$")  # the second form: the notebook runs it
FENCE = re.compile(r"^```(\w+)\s*$")


def _blocks() -> list[tuple[str, str, str]]:
    """(where, language or "notebook:NAME", code) of every marked block."""
    found = []
    for md in sorted((ROOT / "docs").rglob("*.md")):
        lines = md.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            mark = MARK.match(line.strip())
            if not mark or i + 1 >= len(lines):
                continue
            fence = FENCE.match(lines[i + 1])
            assert fence, f"{md}:{i + 1}: {line.strip()} must be followed by a fenced code block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            kind = f"notebook:{mark[1]}" if mark[1] else fence.group(1)
            found.append((f"{md.relative_to(ROOT / 'docs')}:{i + 2}", kind, "\n".join(lines[i + 2 : end])))
    return found


BLOCKS, IN_NOTEBOOKS = [], []
for _block in _blocks():
    (IN_NOTEBOOKS if _block[1].startswith("notebook:") else BLOCKS).append(_block)


def test_the_docs_have_runnable_blocks():
    assert len(BLOCKS) >= 5


def _command(line: str, folders: dict[str, str]) -> list[str]:
    """A shell command as its words, a notebook's ``{folder}`` written as the page's path and its
    ``{1 if QUICK else 3}`` as the full-length value."""
    line = re.sub(r"\{\d+ if QUICK else (\d+)\}", r"\1", line)
    for name, path in folders.items():
        line = line.replace(name, path)
    return shlex.split(line)


@pytest.mark.parametrize("where, kind, code", IN_NOTEBOOKS, ids=[b[0] for b in IN_NOTEBOOKS])
def test_a_block_its_notebook_runs_has_the_notebooks_commands(where, kind, code):
    cells = [c.source for c in notebooks.make(kind.split(":")[1]).cells if c.cell_type == "code"]
    folders = {"{folder}": "$DATA/hymenoptera"}  # the notebooks' folder variable, as the pages write it
    ran = [_command(line[1:], folders) for cell in cells for line in cell.splitlines() if line.startswith("!")]
    commands = [c.strip() for c in code.replace("\\\n", " ").splitlines() if c.strip()]
    assert commands
    for command in commands:
        assert _command(command, {}) in ran, f"{where}: the notebook does not run {command}"


@pytest.mark.slow
@pytest.mark.parametrize("where, language, code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_block_runs(where, language, code, tmp_path):
    if "$DATA" in code and not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"{where} needs the real data in {SHARED_DATA}")
    env = {**os.environ, "ZOO_REPO": str(ROOT), "DATA": str(SHARED_DATA), "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    if language == "python":
        script = tmp_path / "block.py"
        cmd = [sys.executable, str(script)]
    elif language in ("bash", "sh"):
        script = tmp_path / "block.sh"
        cmd = ["bash", "-euo", "pipefail", str(script)]
    else:
        pytest.fail(f"{where}: runnable blocks are python or bash, not {language}")
    script.write_text(code + "\n", encoding="utf-8")
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{where} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
