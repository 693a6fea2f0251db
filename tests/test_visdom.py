"""Visdom end to end, offline, as a user runs it: ``python -m visdom.server`` on 127.0.0.1 serves its page from the
files that ``make venv`` installs from the npm registry (tools/visdom_offline_assets.py), and a short run with
``--logger visdom`` sends its plots there; the page's files and the plots are read back.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from synth_data import make_idx_dataset, run_zoo

from zoo.training.loggers import VisdomLogger, read_metrics

visdom = pytest.importorskip("visdom")
BUILT = Path(visdom.__file__).parent / "static" / "version.built"  # what the script writes last, per visdom version


def _get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read()


@pytest.fixture
def visdom_server(tmp_path):
    if not (BUILT.is_file() and BUILT.read_text().strip() == visdom.__version__):
        pytest.skip("Visdom's page files are not installed: python tools/visdom_offline_assets.py (make venv runs it)")
    # No network for the server: its proxy is a port held by a socket that never listens, so a download from a CDN
    # fails as it does offline. A free port for the server, as the kernel picks one.
    with socket.socket() as offline, socket.socket() as free:
        offline.bind(("127.0.0.1", 0))
        free.bind(("127.0.0.1", 0))
        proxy, port = f"http://127.0.0.1:{offline.getsockname()[1]}", free.getsockname()[1]
        free.close()
        env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
        env.update(dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), proxy))
        log = tmp_path / "server.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "visdom.server", "-port", str(port), "-env_path",
                                     str(tmp_path / "envs"), "-bind_local"], stdout=out, stderr=subprocess.STDOUT,
                                    env=env)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _get(port, "/")
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"visdom server did not start:\n{log.read_text()}") from None
                    time.sleep(0.2)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _traces(vis, win: str, env: str) -> dict[str, tuple[list[float], list[float]]]:
    data = json.loads(vis.get_window_data(win, env))
    return {t["name"]: (t["x"], t["y"]) for t in data["content"]["data"]}


@pytest.mark.slow
def test_training_plots_live_to_visdom(visdom_server, tmp_path):
    # The page and every file it names under /static/ (but Visdom's optional user/style.css), served offline.
    status, page = _get(visdom_server, "/")
    assets = [u for u in re.findall(r"(?:src|href)=['\"]?(/static/[^\s'\">]+)", page.decode()) if "/user/" not in u]
    assert status == 200 and len(assets) >= 15
    sizes = {}
    for url in assets:
        status, body = _get(visdom_server, url)
        assert status == 200 and body, url
        sizes[url.split("?")[0]] = len(body)
    assert sizes["/static/js/plotly-plotly.min.js"] > 1_000_000 and sizes["/static/css/bootstrap.min.css"] > 10_000

    make_idx_dataset(tmp_path / "data", n_train=96, n_test=32)
    out = tmp_path / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--epochs",
                  "2", "--batch-size", "16", "--logger", "visdom", "--visdom-server", "http://127.0.0.1",
                  "--visdom-port", str(visdom_server), "--visdom-env", "lab10_3", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "no Visdom server" not in res.stderr
    rows = read_metrics(out / "metrics.csv")
    vis = visdom.Visdom(server="http://127.0.0.1", port=visdom_server, env="lab10_3", use_incoming_socket=False)
    loss = _traces(vis, "lab10_3_loss", "lab10_3")
    assert loss["train"] == ([1.0, 2.0], pytest.approx([r["train_loss"] for r in rows]))
    assert loss["test"] == ([1.0, 2.0], pytest.approx([r["test_loss"] for r in rows]))
    acc = _traces(vis, "lab10_3_acc", "lab10_3")
    assert acc["test"][1] == pytest.approx([r["test_acc1"] for r in rows]) and "val" not in acc
    steps = _traces(vis, "lab10_3_step_loss", "lab10_3")["train loss"]
    assert len(steps[0]) >= 2 and steps[0] == sorted(steps[0])  # one point every few steps, in order
    samples = json.loads(vis.get_window_data("lab10_3_samples", "lab10_3"))
    assert samples["type"] == "image" and samples["content"]["src"].startswith("data:image/png;base64,")
    text = json.loads(vis.get_window_data("lab10_3_predictions", "lab10_3"))
    assert "epoch 2: prediction / truth" in text["content"] and text["content"].count("<li>") == 16


def test_no_server_warns_and_training_goes_on():
    # A port held by a socket that never listens: connecting is refused, and no other process can take it.
    with socket.socket() as held, warnings.catch_warnings(record=True) as caught:
        held.bind(("127.0.0.1", 0))
        warnings.simplefilter("always")
        logger = VisdomLogger("http://127.0.0.1", held.getsockname()[1], "x")
    assert not logger.ok and any("no Visdom server" in str(w.message) for w in caught)
    logger.log_epoch(1, {"train_loss": 1.0}, [])  # a no-op, not an error
