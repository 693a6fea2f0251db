"""Visdom end to end: a real server on 127.0.0.1, a short run with ``--logger visdom``, the plots read back.

``python -m visdom.server`` first downloads its JavaScript from CDNs and fails offline, so the server is
started through ``visdom.server.run_server.main``, which serves the API without that step.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import warnings

import pytest
from synth_data import make_idx_dataset, run_zoo

from zoo.training.loggers import VisdomLogger, read_metrics

visdom = pytest.importorskip("visdom")

SERVER = """
import sys
port, env_path = sys.argv[1], sys.argv[2]
sys.argv = ["visdom", "-port", port, "-env_path", env_path, "-bind_local", "-logging_level", "WARNING"]
from visdom.server.run_server import main
main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def visdom_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(tmp_path / "envs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        end = time.time() + 60
        while time.time() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"visdom server died: {proc.stdout.read().decode()}") from None
                time.sleep(0.2)
        else:
            raise AssertionError("visdom server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _traces(vis, win: str, env: str) -> dict[str, tuple[list[float], list[float]]]:
    data = json.loads(vis.get_window_data(win, env))
    return {t["name"]: (t["x"], t["y"]) for t in data["content"]["data"]}


def test_training_plots_live_to_visdom(visdom_server, tmp_path):
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
    assert loss["val"] == ([1.0, 2.0], pytest.approx([r["val_loss"] for r in rows]))
    acc = _traces(vis, "lab10_3_acc", "lab10_3")
    assert acc["val"][1] == pytest.approx([r["val_acc1"] for r in rows])
    steps = _traces(vis, "lab10_3_step_loss", "lab10_3")["train loss"]
    assert len(steps[0]) >= 2 and steps[0] == sorted(steps[0])  # one point every few steps, in order
    samples = json.loads(vis.get_window_data("lab10_3_samples", "lab10_3"))
    assert samples["type"] == "image" and samples["content"]["src"].startswith("data:image/png;base64,")
    text = json.loads(vis.get_window_data("lab10_3_predictions", "lab10_3"))
    assert "epoch 2: prediction / truth" in text["content"] and text["content"].count("<li>") == 16


def test_no_server_warns_and_training_goes_on():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = VisdomLogger("http://127.0.0.1", _free_port(), "x")
    assert not logger.ok and any("no Visdom server" in str(w.message) for w in caught)
    logger.log_epoch(1, {"train_loss": 1.0}, [])  # a no-op, not an error
