"""Every code block in docs/ marked ``<!-- runnable -->`` runs as written, so the guides cannot rot.

Python blocks run with this interpreter, bash blocks with ``bash -e`` and this environment's ``zoo`` and
``python`` first on PATH, each in a fresh folder. ``$ZOO_REPO`` is this checkout and ``$DATA`` the real data
folder; a block that needs ``$DATA`` skips where the real data is not present.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- runnable -->"
FENCE = re.compile(r"^```(\w+)\s*$")


def _blocks() -> list[tuple[str, str, str]]:
    found = []
    for md in sorted((ROOT / "docs").rglob("*.md")):
        lines = md.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() != MARK or i + 1 >= len(lines):
                continue
            fence = FENCE.match(lines[i + 1])
            assert fence, f"{md}:{i + 1}: {MARK} must be followed by a fenced code block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            found.append((f"{md.relative_to(ROOT / 'docs')}:{i + 2}", fence.group(1), "\n".join(lines[i + 2 : end])))
    return found


BLOCKS = _blocks()


def test_the_docs_have_runnable_blocks():
    assert len(BLOCKS) >= 5


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
