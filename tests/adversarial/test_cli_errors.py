"""One error boundary: expected failures are one line and exit code 2; bugs keep their traceback; publish is safe."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import ERROR_LINE, cli, one_error_line

import zoo.cli.list_models


def test_an_expected_failure_is_one_line_with_what_to_do(mnist_dir, tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("x")
    cases = [
        ("predict", "mnist_cnn.mnist", str(tmp_path / "missing.png")),
        ("train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--output", str(out)),
        ("eval", "mnist_cnn", "--checkpoint", str(tmp_path / "no"), "--dataset", "mnist", "--data-dir", str(mnist_dir)),
    ]
    for argv in cases:
        assert cli(*argv) == 2, argv
        one_error_line(capsys.readouterr().err)


def test_debug_shows_the_traceback_of_an_expected_failure(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "missing.png")
    assert cli("--debug", "predict", "mnist_cnn.mnist", missing) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("zoo predict: error:")
    monkeypatch.setenv("ZOO_DEBUG", "1")
    assert cli("predict", "mnist_cnn.mnist", missing) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [ValueError, TypeError, RuntimeError, KeyError, AttributeError, IndexError])
def test_a_bug_is_not_dressed_up_as_bad_input(monkeypatch, bug):
    def broken(args):
        raise bug("a bug in zoo")

    monkeypatch.setattr(zoo.cli.list_models, "main", broken)
    with pytest.raises(bug, match="a bug in zoo"):
        cli("list")


# ------------------------------------------------------------------------------------------ publish


def test_publish_never_replaces_the_run_it_publishes(run_copy, weights_env, capsys):
    before = sorted(p.name for p in run_copy.iterdir())
    for out in (run_copy, run_copy.parent):
        assert cli("publish", str(run_copy), "--name", "mnist_cnn.x", "--out", str(out), "--force") == 2
        assert str(out) in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_publish_name_with_a_slash_is_a_clear_error(run_copy, weights_env, tmp_path, capsys):
    assert cli("publish", str(run_copy), "--name", "mnist_cnn.a/b", "--out", str(tmp_path / "o")) == 2
    assert "'mnist_cnn.a/b'" in one_error_line(capsys.readouterr().err)


def test_published_folders_and_files_honour_the_umask(run_copy, weights_env, tmp_path):
    out = tmp_path / "hub" / "mnist_cnn.x"
    old = os.umask(0o022)
    try:
        assert cli("publish", str(run_copy), "--name", "mnist_cnn.x", "--out", str(out)) == 0
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {oct(0o644)}
    shutil.rmtree(out)


# ------------------------------------------------------------------------------- settings torch refuses


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--device", "quantum"], "--device quantum"),
        (["--device", "cuda:x"], "--device cuda:x"),
        (["--device", "cpu:1"], "--device cpu:1"),
        (["--threads", "-1"], "--threads=-1"),
        (["--threads", "0"], "--threads=0"),
        (["--set", "label_smoothing=2"], "label_smoothing=2"),
        (["--label-smoothing", "1"], "label_smoothing=1"),
        (["--ema-decay", "1.5"], "ema_decay=1.5"),
        (["--hflip", "-0.5"], "hflip=-0.5"),
        (["--set", "eval_model=best"], "eval_model='best'"),
    ],
)
def test_settings_torch_would_refuse_are_one_clear_line(mnist_dir, tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    assert cli("train", "mnist_cnn", "--dataset", "mnist", "--data-dir", mnist_dir, "--output", out, *extra) == 2
    err = one_error_line(capsys.readouterr().err)
    assert named in err, err
    assert not out.exists()  # refused before anything was written


def test_a_gpu_torch_does_not_see_is_one_clear_line(mnist_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for command in (["train", "mnist_cnn", "--dataset", "mnist", "--data-dir", mnist_dir, "--output", tmp_path / "r"],
                    ["eval", "mnist_cnn.mnist", "--pretrained", "--dataset", "mnist", "--data-dir", mnist_dir],
                    ["bench", "mnist_cnn", "--steps", "1", "--warmup", "0"]):  # fmt: skip
        assert cli(*command, "--device", "cuda") == 2
        err = capsys.readouterr().err.strip()
        assert ERROR_LINE.match(err) and "torch sees no GPU" in err and "--device cpu" in err, err
    if not torch.backends.mps.is_available():
        assert cli(*command, "--device", "mps") == 2
        assert "torch sees no Apple GPU (MPS)" in capsys.readouterr().err


def test_create_model_without_a_name_says_what_a_name_is():
    import zoo

    for bad in (None, "", 50):
        with pytest.raises(TypeError, match="a model name must be a non-empty string"):
            zoo.create_model(bad)


def test_label_names_that_do_not_match_the_classes_are_named_not_an_index_error(tmp_path, capsys):
    import torch
    from PIL import Image

    import zoo
    from zoo.pretrained.files import save_weights

    model = zoo.create_model("mnist_cnn")
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": ["zero", "one"]}  # 2 names, 10 classes
    save_weights(model, tmp_path / "w.safetensors")
    Image.fromarray(torch.zeros(28, 28, dtype=torch.uint8).numpy()).save(tmp_path / "digit.png")
    assert cli("predict", "mnist_cnn", "--checkpoint", tmp_path / "w.safetensors", tmp_path / "digit.png") == 2
    err = one_error_line(capsys.readouterr().err)
    assert "label_names" in err, err


def test_options_may_stand_between_positionals_as_in_the_course(tmp_path, capsys):
    """Lab10-4's `zoo predict resnet20 --checkpoint finetuned/best.safetensors photo.jpg`."""
    from PIL import Image

    import zoo
    from zoo.pretrained.files import save_weights

    save_weights(zoo.create_model("mnist_cnn"), tmp_path / "best.safetensors")
    Image.new("L", (28, 28)).save(tmp_path / "photo.png")
    assert cli("predict", "mnist_cnn", "--checkpoint", tmp_path / "best.safetensors", tmp_path / "photo.png") == 0
    assert f"{tmp_path / 'photo.png'}:" in capsys.readouterr().out


def test_result_files_never_replace_a_link_or_write_through_it(mnist_dir, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    for name, command in (
        ("eval.json", ["eval", "mnist_cnn.mnist", "--pretrained", "--dataset", "mnist", "--data-dir", mnist_dir,
                       "--confusion", tmp_path / "c.png", "--json"]),
        ("bench.csv", ["bench", "mnist_cnn", "--steps", "1", "--warmup", "0", "--format", "csv", "--output"]),
    ):  # fmt: skip
        link = tmp_path / name
        link.symlink_to(victim)
        assert cli(*command, link) == 2
        assert str(link) in one_error_line(capsys.readouterr().err)
        assert victim.read_text() == "the user's own file\n" and link.is_symlink()
