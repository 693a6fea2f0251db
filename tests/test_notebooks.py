"""The labs' notebooks (docs/tutorials/*.ipynb): current with scripts/notebooks.py, their stored outputs clean, and
each one run in a Jupyter kernel on a few hundred images, so that they cannot rot."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from helpers import SHARED_DATA

pytestmark = pytest.mark.slow  # each notebook runs in a Jupyter kernel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import notebooks  # noqa: E402

nbformat = pytest.importorskip("nbformat")
NAMES = list(notebooks.NOTEBOOKS)
# What no stored output may hold: a folder of the machine that ran it, or a traceback.
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|/Users/|[A-Z]:\\)")
# A shell command (``!zoo ...``) that failed: IPython goes on to the next cell, so its output is what tells.
FAILED = re.compile(r"^(zoo \w+: error:|Traceback \(most recent call last\))", re.M)


def _read(name: str):  # noqa: ANN202
    return nbformat.read(notebooks.TUTORIALS / f"{name}.ipynb", as_version=4)


def test_the_six_labs_are_notebooks_in_the_course_order():
    assert [f"lab10-{i}" for i in range(1, 7)] == NAMES
    assert sorted(p.stem for p in notebooks.TUTORIALS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_committed_notebook_has_the_generator_cells_and_clean_outputs(name):
    nb = _read(name)
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        (c.cell_type, c.source) for c in notebooks.make(name).cells
    ], f"{name}.ipynb is out of date: run python scripts/notebooks.py {name}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell was run for the stored outputs"
    outputs = [o for c in code for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    assert not FAILED.search(text), FAILED.search(text)


def test_stored_outputs_show_what_a_terminal_shows():
    assert notebooks.tidy("epoch 1:  10%\repoch 1: 100%\nnext\n", {}) == "epoch 1: 100%\nnext\n"
    bar = "epoch 1/3:  92%|#| 12/13 [00:00<00:00, 25.72batch/s, loss=1.00]"
    assert notebooks.tidy(f"a line through a pty\r\n{bar}\r\n\rbar 50%\r     \r\ndone\r\n", {}) == (
        "a line through a pty\ndone\n"
    )
    assert (
        notebooks.tidy("saved /m/c/run/x and /m/c/data", {"/m/c/": "", "/m/c/data": "data"}) == "saved run/x and data"
    )
    warned = "/m/c/zoo/x.py:30: UserWarning: dropped fc.weight\n  weights = create_model(name)  # a zoo line\nnext\n"
    assert notebooks.tidy(warned, {"/m/c/": ""}) == "UserWarning: dropped fc.weight\nnext\n"


def _visdom_page_installed() -> bool:
    """Visdom is installed and tools/visdom_offline_assets.py (make venv) filled its static/ for this version."""
    try:
        import visdom
    except ImportError:
        return False
    built = Path(visdom.__file__).parent / "static" / "version.built"
    return built.is_file() and built.read_text().strip() == visdom.__version__


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = notebooks.make(name)
    needs_data = any("DATA" in c.source for c in nb.cells if c.cell_type == "code" and c.source != notebooks.SETUP)
    if needs_data and not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"{name} needs the real data in {SHARED_DATA}")
    if name == "lab10-3" and not _visdom_page_installed():  # its server starts offline from those files
        pytest.skip("lab10-3 needs Visdom and its page's files: python tools/visdom_offline_assets.py")
    monkeypatch.setenv("ZOO_DATA", str(SHARED_DATA))
    monkeypatch.setenv("ZOO_NOTEBOOK_QUICK", "1")
    notebooks.run(nb, tmp_path, timeout=600)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(o.get("text", "") for o in outputs)
    failed = FAILED.search(text)
    assert failed is None, text[failed.start() - 1000 : failed.start() + 3000] if failed else ""
    # Each lab shows what it is about: the course's sizes, and accuracies of trained weights.
    expected = {"lab10-1": "torch.Size([1, 1, 55, 55]) 55", "lab10-2": "top-1",
                "lab10-3": "test_acc1", "lab10-4": "accuracy on val/: ", "lab10-5": "top-1",
                "lab10-6": "resnet32.cifar10: top-1"}  # fmt: skip
    assert expected[name] in text
