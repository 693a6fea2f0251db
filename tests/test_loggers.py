"""metrics.csv, curves.png and TensorBoard event files."""

from __future__ import annotations

import signal

import pytest
import torch
from PIL import Image
from synth_data import make_idx_dataset, run_zoo

from zoo.training.loggers import RunLoggers, plot_curves, read_metrics


def _row(epoch, **kw):
    return {"epoch": epoch, "lr": 0.1 / epoch, "train_loss": 1.0 / epoch, "train_acc1": 50.0 + epoch,
            "val_loss": 1.5 / epoch, "val_acc1": 40.0 + epoch, "val_acc5": 90.0, "epoch_time": 1.0, **kw}  # fmt: skip


def test_csv_appends_and_a_resume_drops_rows_past_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    log, history = RunLoggers(tmp_path), []
    for e in (1, 2, 3):
        history.append(_row(e))
        log.log_epoch(e, _row(e), history)
    rows = read_metrics(path)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[2]["train_loss"] == 1.0 / 3  # full precision survives the round trip
    RunLoggers(tmp_path, resume_epoch=2)  # epoch 3 was logged, but the checkpoint is from epoch 2
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2]
    RunLoggers(tmp_path)  # a new run starts a new file
    assert read_metrics(path) == []


def test_curves_png(tmp_path):
    history = [_row(1), _row(2, val_loss=None, val_acc1=None)]
    plot_curves(history, tmp_path / "curves.png", title="t")
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG" and im.size == (1000, 400)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left behind


@pytest.mark.slow
def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_idx_dataset(tmp_path / "data", n_train=96, n_test=32)
    out = tmp_path / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--epochs",
                  "2", "--batch-size", "32", "--logger", "tensorboard", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    rows = read_metrics(out / "metrics.csv")
    test = acc.Scalars("accuracy/test_acc1")
    assert [e.step for e in test] == [1, 2]
    assert [e.value for e in test] == pytest.approx([r["test_acc1"] for r in rows], rel=1e-6)
    assert [e.value for e in acc.Scalars("loss/train")] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)
    assert "samples" in acc.Tags()["images"]


class _Crash(Exception):
    pass


class _Bright(torch.utils.data.Dataset):
    """8x8 RGB images, class 1 bright, with a random brightness jitter from the global RNG (as transforms draw)."""

    classes = ["dark", "bright"]

    def __init__(self):
        self.labels = torch.arange(32) % 2
        self.images = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
        self.images += self.labels.view(-1, 1, 1, 1) * 0.5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i] + 0.1 * torch.rand(()), int(self.labels[i])


def test_tensorboard_after_a_crash_and_resume_has_each_step_once(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from zoo.training import fit
    from zoo.training.recipes import get_recipe

    recipe = get_recipe("seed-mnist").replace(epochs=3, batch_size=8, workers=0)  # 4 steps per epoch, all logged
    out = tmp_path / "run"

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2))

    def crash(signum, frame):
        raise _Crash

    # A crash right after step 6, in epoch 2 (zoo.training.signals' hook): steps 5 and 6 are logged after
    # the epoch-1 checkpoint, then trained and logged again by the resumed run.
    previous = signal.signal(signal.SIGUSR1, crash)
    try:
        monkeypatch.setenv("ZOO_TRAIN_SIGNAL", "SIGUSR1@6")
        with pytest.raises(_Crash):
            fit(model(), _Bright(), None, recipe, out, loggers=["tensorboard"], progress=False)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    monkeypatch.delenv("ZOO_TRAIN_SIGNAL")
    fit(model(), _Bright(), None, recipe, out, resume=out, loggers=["tensorboard"], progress=False)
    # The resumed run is the uninterrupted one, although TensorBoard's sample images drew from the dataset.
    reference = fit(model(), _Bright(), None, recipe, tmp_path / "ref", loggers=["tensorboard"], progress=False)
    rows = read_metrics(out / "metrics.csv")
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in reference.history]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("step/loss")] == list(range(1, 13))
    train_loss = acc.Scalars("loss/train")
    assert [e.step for e in train_loss] == [1, 2, 3]
    assert [e.value for e in train_loss] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)
