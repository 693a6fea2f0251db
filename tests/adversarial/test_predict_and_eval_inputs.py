"""``zoo predict`` and ``zoo eval`` given inputs that contradict each other or files they must not write.

Each case ends in one line, ``zoo CMD: error: ...`` with exit code 2, naming both sides of the contradiction,
and leaves every file it was pointed at as it was: a run's own files, a user's file, the weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli, one_error_line, train_argv
from synth_data import make_image_folder


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The error line of the command that just failed (and that it is one line of the form all errors take)."""
    return one_error_line(capsys.readouterr().err)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _digit() -> str:
    from zoo.predict import SAMPLES_DIR

    record = next(r for r in json.loads((SAMPLES_DIR / "samples.json").read_text()) if r["dataset"] == "mnist")
    return str(SAMPLES_DIR / record["file"])


# ------------------------------------------------------------------------------------------ zoo eval outputs


def test_eval_never_writes_its_results_over_a_runs_files_or_a_users(run_copy, mnist_dir, tmp_path, capsys):
    before = _files(run_copy)
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's own notes\n")
    (tmp_path / "to-run").symlink_to(run_copy)
    ev = ["eval", "mnist_cnn", "--checkpoint", run_copy, "--dataset", "mnist", "--data-dir", mnist_dir]
    for outputs in (
        ["--confusion", run_copy / "curves.png", "--json", run_copy / "metrics.csv"],
        ["--json", run_copy / "results.json"],  # a new file, but in the run
        ["--json", tmp_path / "to-run" / "results.json"],  # through a link to it
        ["--json", mine],
        ["--confusion", mine],
    ):
        assert cli(*ev, *outputs, "--output", tmp_path / "ev") == 2, outputs
        assert str(outputs[1]) in _one_line(capsys)  # the file refused
    assert _files(run_copy) == before and mine.read_text() == "the user's own notes\n"
    assert not (tmp_path / "ev").exists()  # refused before anything was written
    # Fresh paths work, and so does the same command again: it replaces its own results.
    fresh = ["--json", tmp_path / "e.json", "--confusion", tmp_path / "c.png"]
    for _ in range(2):
        assert cli(*ev, *fresh) == 0
        assert json.loads((tmp_path / "e.json").read_text())["count"] == 32
    assert _files(run_copy) == before


# ------------------------------------------------------------------------------------------ resume


def _results_json(run: Path) -> str:
    return json.dumps({"model": "mnist_cnn", "source": str(run), "dataset": "mnist", "acc1": 50.0}, indent=1)


@pytest.mark.parametrize(
    "damage",
    [
        _results_json,  # what `zoo eval --json RUN/metrics.csv` used to leave there
        lambda run: (run / "metrics.csv").read_text() + "2,0.1,0.5,extra,cells,1,2,3,4,5,6,7,8,9,10\n",
        lambda run: (run / "metrics.csv").read_text() + "two" + ",1" * 12 + "\n",  # an epoch that is not a number
    ],
    ids=["json", "extra-cells", "text-epoch"],
)
def test_resume_names_a_damaged_metrics_csv(damage, run_copy, mnist_dir, capsys):
    (run_copy / "metrics.csv").write_text(damage(run_copy))
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 2
    assert str(run_copy / "metrics.csv") in _one_line(capsys)


def test_resume_names_a_binary_metrics_csv(run_copy, mnist_dir, capsys):
    shutil.copyfile(run_copy / "curves.png", run_copy / "metrics.csv")
    assert cli(*train_argv(mnist_dir, run_copy, "--resume", epochs=2)) == 2
    assert str(run_copy / "metrics.csv") in _one_line(capsys)


# ------------------------------------------------------------------------------------------ eval: classes


def test_eval_refuses_an_image_folder_of_other_classes(tmp_path, capsys):
    make_image_folder(tmp_path / "photos", per_class=6, size=20)  # cat, dog, fish
    make_image_folder(tmp_path / "n11", classes=("ant", "bee", "cow"), per_class=4, size=20)
    run = tmp_path / "run"
    assert cli("train", "resnet20", "--dataset", f"imagefolder:{tmp_path / 'photos'}", "--epochs", "1",
               "--batch-size", "4", "--workers", "0", "--output", run) == 0  # fmt: skip
    capsys.readouterr()
    ev = ["eval", "resnet20", "--checkpoint", run, "--workers", "0"]
    assert cli(*ev, "--dataset", f"imagefolder:{tmp_path / 'n11'}", "--output", tmp_path / "ev") == 2
    err = one_error_line(capsys.readouterr().err.splitlines()[-1])  # after the data's notes, if any
    assert all(name in err for name in ("cat", "dog", "fish", "ant", "bee", "cow")), err
    assert not (tmp_path / "ev").exists()
    # The classes it knows, in another folder: scored as before.
    make_image_folder(tmp_path / "more", per_class=2, size=20)
    assert cli(*ev, "--dataset", f"imagefolder:{tmp_path / 'more'}", "--output", tmp_path / "ev2") == 0
    assert json.loads((tmp_path / "ev2" / "results.json").read_text())["label_names"] == ["cat", "dog", "fish"]


# ------------------------------------------------------------------------------------------ weights headers


def test_a_huge_header_value_is_cut_short_in_the_error(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    import zoo
    from zoo.pretrained.files import save_weights

    save_weights(zoo.create_model("mnist_cnn"), tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    deep = 100_000  # label_names nested beyond what JSON can be read to: a 200 KB value
    metadata["zoo.pretrained_cfg"] = '{"label_names": ' + "[" * deep + "]" * deep + "}"
    save_file(tensors, str(tmp_path / "deep.safetensors"), metadata=metadata)
    assert cli("predict", "mnist_cnn", "--checkpoint", tmp_path / "deep.safetensors", _digit()) == 2
    err = _one_line(capsys)
    assert "zoo.pretrained_cfg" in err and len(err) < 600, len(err)


# ------------------------------------------------------------------------------------------ predict


def test_predict_refuses_published_weights_named_with_a_checkpoint(run_copy, capsys):
    """``mnist_cnn.mnist`` names the published weights, --checkpoint the run's: which were used is a guess."""
    assert cli("predict", "mnist_cnn.mnist", "--checkpoint", run_copy, _digit()) == 2
    err = _one_line(capsys)
    assert "mnist_cnn.mnist" in err and str(run_copy) in err, err


def test_eval_refuses_published_weights_named_with_a_checkpoint(run_copy, mnist_dir, capsys):
    """``zoo eval mnist_cnn.mnist --checkpoint RUN`` would score the run's weights under the published name."""
    argv = ["eval", "mnist_cnn.mnist", "--checkpoint", run_copy, "--dataset", "mnist", "--data-dir", mnist_dir]
    assert cli(*argv) == 2
    err = _one_line(capsys)
    assert "mnist_cnn.mnist" in err and str(run_copy) in err, err


def test_predict_refuses_another_architecture_than_the_checkpoint_records(run_copy, capsys):
    assert cli("predict", "resnet20", "--checkpoint", run_copy, _digit()) == 2
    err = _one_line(capsys)
    assert "'mnist_cnn'" in err and "'resnet20'" in err and "num_classes" not in err, err
    assert cli("predict", "mnist_cnn", "--checkpoint", run_copy, _digit()) == 0  # the one it records
    assert f"mnist_cnn ({run_copy}):" in capsys.readouterr().out
