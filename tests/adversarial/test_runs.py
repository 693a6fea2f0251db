"""Training runs under attack: a second process, a changed dataset, signals, a full disk, stale files."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import cli, one_error_line, subprocess_env, train_argv

from zoo.training.loggers import read_metrics


def _status(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------ resume


def test_resume_refuses_another_dataset(run_copy, fashion_dir, capsys):
    before = _files(run_copy)
    argv = train_argv(fashion_dir, run_copy, "--resume", epochs=2, dataset="fashion_mnist")
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo train: error: ") and "mnist" in err and "fashion_mnist" in err
    assert _files(run_copy) == before


def test_a_checkpoint_without_its_record_of_the_data_still_refuses_other_images(run_copy, tmp_path, capsys):
    from synth_data import make_idx_dataset

    ckpt = torch.load(run_copy / "last.pt", weights_only=True)
    torch.save({**ckpt, "trains": None}, run_copy / "last.pt")  # a damaged checkpoint: what it trains is unknown
    other = make_idx_dataset(tmp_path / "other" / "MNIST" / "raw", n_train=64, n_test=32, seed=9)
    before = _files(run_copy)
    assert cli(*train_argv(other, run_copy, "--resume", epochs=2)) == 2
    err = capsys.readouterr().err
    assert "trains" in err and str(run_copy / "last.pt") in err  # refused, naming the field
    assert _files(run_copy) == before


def test_resume_refuses_another_model(run_copy, mnist_dir, capsys):
    argv = train_argv(mnist_dir, run_copy, "--resume", epochs=2)
    argv[1] = "resnet20"
    assert cli(*argv) == 2
    assert "mnist_cnn" in capsys.readouterr().err


def test_resume_refuses_another_class_set(tmp_path):
    from zoo.data.tensor import TensorImageDataset
    from zoo.errors import RunError
    from zoo.training import Recipe, fit

    images = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8)
    targets = torch.arange(8) % 2

    def data(classes):
        return TensorImageDataset(images, targets, classes, (0.5,), (0.5,))

    def model():
        import zoo

        return zoo.create_model("mnist_cnn", num_classes=2)

    recipe = Recipe(epochs=1, batch_size=4, workers=0)
    fit(model(), data(["cat", "dog"]), None, recipe, tmp_path / "run", progress=False)
    with pytest.raises(RunError) as e:
        fit(model(), data(["ant", "bee"]), None, recipe.replace(epochs=2), tmp_path / "run", resume=tmp_path / "run",
            progress=False)  # fmt: skip
    assert all(name in str(e.value) for name in ("cat", "dog", "ant", "bee"))


def test_resume_refuses_another_folder_with_the_same_classes(tmp_path, capsys):
    from synth_data import make_image_folder

    first, other = tmp_path / "photos", tmp_path / "other"
    make_image_folder(first, per_class=6, size=20)
    make_image_folder(other, per_class=6, size=21)  # the same class names and count, other pictures
    run = tmp_path / "run"
    argv = ["train", "resnet20", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--output", run]
    assert cli(*argv, "--dataset", f"imagefolder:{first}") == 0
    recorded = _status(run)["data_identity"]
    assert recorded["train_data"]["images"] + recorded["val_data"]["images"] == 18
    before = _files(run)
    resume = ["train", "resnet20", "--epochs", "2", "--workers", "0", "--output", run, "--resume"]
    assert cli(*resume, "--dataset", f"imagefolder:{other}") == 2
    err = capsys.readouterr().err
    assert recorded["train_data"]["sha256"][:12] in err.splitlines()[-1]
    assert _files(run) == before


def test_resume_refuses_a_changed_val_subset_which_would_choose_the_kept_epoch(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(*train_argv(mnist_dir, run, "--val-split", "0.25", "--val-subset", "8")) == 0
    before = _files(run)
    assert cli(*train_argv(mnist_dir, run, "--val-split", "0.25", "--val-subset", "12", "--resume", epochs=2)) == 2
    assert _status(run)["data_identity"]["val_data"]["sha256"][:12] in one_error_line(capsys.readouterr().err)
    assert _files(run) == before
    assert cli(*train_argv(mnist_dir, run, "--val-split", "0.25", "--val-subset", "8", "--resume", epochs=2)) == 0


def test_resume_refuses_changed_settings_and_names_them(run_copy, mnist_dir, capsys):
    saved = _status(run_copy)["recipe"]
    argv = train_argv(mnist_dir, run_copy, "--resume", "--lr", "0.5", "--set", "weight_decay=0.3", epochs=2)
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert (
        "lr=0.5" in err and "weight_decay=0.3" in err and str(saved["lr"]) in err and str(saved["weight_decay"]) in err
    )
    # Repeating the run's own values, or a longer --epochs, is fine.
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", "--batch-size", "16", epochs=2)) == 0
    assert len(read_metrics(run_copy / "metrics.csv")) == 2


def test_resume_from_a_pickle_payload_is_refused_without_running_it(run_copy, mnist_dir, tmp_path, capsys):
    evidence = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(evidence), "w"))

    (run_copy / "last.pt").write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo train: error: ") and "last.pt" in err and "weights_only" in err
    assert not evidence.exists()


@pytest.mark.parametrize(
    "damage, named",
    [
        ("{not json", "run.json"),
        ("[1, 2, 3]", "[1, 2, 3]"),
        ('{"recipe": "fast"}', "recipe='fast'"),
        ('{"recipe": {"lr": "fast"}}', "lr='fast'"),
        ('{"recipe": {"no_such_field": 1}}', "no_such_field"),
        ('{"recipe": {"batch_size": "64"}}', "batch_size='64'"),
    ],
)
def test_a_damaged_run_json_is_named_on_resume(run_copy, mnist_dir, capsys, damage, named):
    (run_copy / "run.json").write_text(damage)
    before = (run_copy / "last.pt").read_bytes()
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(run_copy / "run.json") in err and named in err, err
    assert (run_copy / "last.pt").read_bytes() == before  # the checkpoint is left as it was


def _damaged_checkpoints():
    def drop(key):
        return lambda c: {k: v for k, v in c.items() if k != key}

    def change(key, value):
        return lambda c: {**c, key: value}

    def wrong_shapes(c):
        return {**c, "model": {k: torch.zeros(3) for k in c["model"]}}

    return [
        ("no model", drop("model"), "model="),
        ("epoch as text", change("epoch", "1"), "epoch='1'"),
        ("history as a dict", change("history", {}), "history={}"),
        ("optimizer as a list", change("optimizer", []), "optimizer=[]"),
        ("weights of another shape", wrong_shapes, "RuntimeError"),
        ("an optimizer of another model", change("optimizer", {"state": {}, "param_groups": []}), "ValueError"),
        ("a negative epoch", change("epoch", -5), "epoch=-5"),
        ("an epoch beyond its history", change("epoch", 10**6), "epoch=1000000"),
        ("a kept epoch it never ran", change("best_epoch", 7), "best_epoch=7"),
        ("a negative step count", change("global_step", -1), "global_step=-1"),
        ("an unknown field", change("rng", {}), "rng="),
    ]


@pytest.mark.parametrize("what, damage, named", _damaged_checkpoints(), ids=[d[0] for d in _damaged_checkpoints()])
def test_a_damaged_checkpoint_is_named_on_resume(run_copy, mnist_dir, capsys, what, damage, named):
    ckpt = torch.load(run_copy / "last.pt", weights_only=True)
    torch.save(damage(ckpt), run_copy / "last.pt")
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 2
    err = one_error_line(capsys.readouterr().err)
    assert named in err and str(run_copy / "last.pt") in err, err


def test_predict_takes_a_run_folder_and_reads_the_architecture_from_the_weights(run_copy, capsys):
    from zoo.predict import SAMPLES_DIR

    record = next(r for r in json.loads((SAMPLES_DIR / "samples.json").read_text()) if r["dataset"] == "mnist")
    digit = str(SAMPLES_DIR / record["file"])
    outputs = []
    for argv in (["predict", "mnist_cnn", "--checkpoint", run_copy / "best.safetensors", digit],  # Lab10-4's order
                 ["predict", "--checkpoint", run_copy, digit],  # a run folder, the architecture from the header
                 ["predict", digit, "--checkpoint", run_copy]):  # fmt: skip
        assert cli(*argv) == 0
        outputs.append(capsys.readouterr().out.splitlines()[1])
    assert outputs[0] == outputs[1] == outputs[2] and digit in outputs[0]
    empty = run_copy.parent / "empty"
    empty.mkdir()
    assert cli("predict", "--checkpoint", empty, digit) == 2
    assert str(empty) in one_error_line(capsys.readouterr().err)


def test_a_resumed_run_keeps_the_command_that_started_it(run_copy, mnist_dir):
    started = _status(run_copy)["zoo_command"]
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 0
    record = _status(run_copy)
    assert record["zoo_command"] == started and "--resume" not in started
    assert len(record["resumed_with"]) == 1 and "--resume" in record["resumed_with"][0]


# ------------------------------------------------------------------------------------------ bad options


def test_zero_epochs_a_mistyped_setting_and_an_output_that_is_a_file(mnist_dir, tmp_path, capsys):
    assert cli(*train_argv(mnist_dir, tmp_path / "run", epochs=0)) == 2
    assert "epochs=0" in capsys.readouterr().err
    assert cli(*train_argv(mnist_dir, tmp_path / "run", "--set", "warmup_epochs=soon")) == 2
    assert "warmup_epochs='soon'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert cli(*train_argv(mnist_dir, file)) == 2
    assert str(file) in one_error_line(capsys.readouterr().err)
    assert file.read_text() == "mine"


@pytest.mark.parametrize(
    "files",
    [
        {"config.json": '{"mine": true}', "metrics.csv": "my,numbers\n", ".notes.txt.123.456.tmp": "not zoo's"},
        # named as a run's files, but the user's: no run.json of zoo's says this is a run
        {"best.safetensors": "my weights", "metrics.csv": "my,numbers\n"},
        {"config.json": '{"mine": true}', ".run.json.123.456.tmp": "looks like zoo's temporary file"},
        {"run.json": '{"status": "mine"}'},
    ],
)
def test_an_output_folder_that_is_not_a_run_is_left_alone(mnist_dir, tmp_path, capsys, files):
    mine = tmp_path / "project"
    mine.mkdir()
    for name, text in files.items():
        (mine / name).write_text(text)
    before = _files(mine)
    assert cli(*train_argv(mnist_dir, mine)) == 2
    assert str(mine) in one_error_line(capsys.readouterr().err)
    assert _files(mine) == before


def test_a_run_killed_before_its_first_file_can_be_started_again(mnist_dir, tmp_path):
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".zoo-train.lock").touch()  # what a run killed at once leaves, with a half-written run.json
    (killed / ".run.json.123.456.tmp").write_text('{"status": "run')
    assert cli(*train_argv(mnist_dir, killed)) == 0
    assert _status(killed)["status"] == "finished"


def test_a_run_folder_and_an_empty_folder_are_still_written(mnist_dir, tmp_path, run_copy):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(*train_argv(mnist_dir, empty)) == 0
    assert _status(empty)["status"] == "finished"
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 0
    assert _status(run_copy)["status"] == "finished"


# ------------------------------------------------------------------------------------------ signals and the lock


@pytest.mark.slow
def test_a_second_process_cannot_write_into_a_running_run_and_sigterm_stops_it_cleanly(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    # The first run stops itself (SIGSTOP) right after optimiser step 2, holding the run folder.
    env = subprocess_env({"ZOO_TRAIN_SIGNAL": "SIGSTOP@2"})
    first = subprocess.Popen([sys.executable, "-m", "zoo", *train_argv(mnist_dir, out, epochs=2)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), "the first run ended instead of stopping"
        before = _files(out)
        assert cli(*train_argv(mnist_dir, out, epochs=2)) == 2
        assert str(out / ".zoo-train.lock") in one_error_line(capsys.readouterr().err)  # the lock that holds it
        assert _files(out) == before
        first.send_signal(signal.SIGTERM)  # as a scheduler would: finish the batch, save, record, exit
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert _status(out)["status"] == "interrupted"
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 2)
    assert cli(*train_argv(mnist_dir, out, "--resume", epochs=2)) == 0  # the lock went with the process
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1, 2]


def test_a_double_ctrl_c_still_records_how_the_run_ended(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_TRAIN_SIGNAL", "SIGINT@2,SIGINT@2")  # a second Ctrl-C before the first is handled
    out = tmp_path / "run"
    assert cli(*train_argv(mnist_dir, out)) == 130
    status = _status(out)
    assert status["status"] == "interrupted" and status["error"]


def test_a_full_disk_ends_the_run_as_failed_with_a_clear_error(mnist_dir, small_fs, capsys):
    out = small_fs / "run"  # last.pt (800 KB) does not fit on the 512 KiB file system
    assert cli(*train_argv(mnist_dir, out)) == 2
    err = one_error_line(capsys.readouterr().err)
    assert os.strerror(errno.ENOSPC) in err  # the OSError, named as the system names it
    status = _status(out)
    assert status["status"].startswith("failed") and os.strerror(errno.ENOSPC) in status["error"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


KILLED_SAVE = """
import os, signal, sys, torch
from zoo.training.checkpoint import atomic_torch_save
real = torch.save
def save_then_die(obj, f, *a, **k):
    real(obj, f, *a, **k)
    os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is written, the rename never happens
torch.save = save_then_die
atomic_torch_save({"junk": torch.zeros(1000)}, __import__("pathlib").Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_a_kill_during_the_checkpoint_save_leaves_nothing_behind(run_copy, mnist_dir):
    last = (run_copy / "last.pt").read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(run_copy / "last.pt")], env=subprocess_env())
    assert killed.returncode == -signal.SIGKILL
    assert (run_copy / "last.pt").read_bytes() == last  # the old checkpoint is intact
    assert [p.name for p in run_copy.glob(".last.pt.*.tmp")]  # and the dead process's temporary file is there
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 0
    assert [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")] == []
