"""Visdom end to end: a real server on 127.0.0.1, a short run with ``--logger visdom``, the plots read back.

``python -m visdom.server`` first downloads its JavaScript from CDNs and fails offline, so the test starts
visdom's tornado ``Application`` itself, which serves the API without that step.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import warnings

import pytest
from synth_data import make_idx_dataset, run_zoo

from zoo.training.loggers import VisdomLogger, read_metrics

visdom = pytest.importorskip("visdom")

SERVER = """
import sys
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
from visdom.server.app import Application

# Bind the listening socket first, on a port the kernel picks, and keep it: the port printed is already
# accepting connections, and no other process can take it in between.
sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
port = sockets[0].getsockname()[1]
app = Application(port=port, env_path=sys.argv[1])
server = tornado.httpserver.HTTPServer(app, max_buffer_size=1024**3)
server.add_sockets(sockets)
print(port, flush=True)
tornado.ioloop.IOLoop.current().start()
"""


@pytest.fixture
def visdom_server(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "envs")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()  # the port, printed once the socket listens
        if not line.strip().isdigit():
            raise AssertionError(f"visdom server did not start: {line}{proc.stdout.read() if proc.poll() else ''}")
        yield int(line)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _traces(vis, win: str, env: str) -> dict[str, tuple[list[float], list[float]]]:
    data = json.loads(vis.get_window_data(win, env))
    return {t["name"]: (t["x"], t["y"]) for t in data["content"]["data"]}


@pytest.mark.slow
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
