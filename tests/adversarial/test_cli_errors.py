"""One error boundary: expected failures are one line and exit code 2; bugs keep their traceback; publish is safe."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from adversarial_fixtures import cli, finished_run_fixture, mnist_dir_fixture, run_copy_fixture  # noqa: F401
from weights_fixtures import mnist_file_fixture, server_fixture, weights_env_fixture  # noqa: F401

import zoo.cli.list_models

LINE = re.compile(r"^zoo [a-z]+: error: \S.* — \S.*$")


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
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and LINE.match(err.strip()), err


def test_debug_shows_the_traceback_of_an_expected_failure(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "missing.png")
    assert cli("--debug", "predict", "mnist_cnn.mnist", missing) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("zoo predict: error:")
    monkeypatch.setenv("ZOO_DEBUG", "1")
    assert cli("predict", "mnist_cnn.mnist", missing) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [TypeError, RuntimeError, KeyError, AttributeError])
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
        err = capsys.readouterr().err
        assert err.startswith("zoo publish: error: ") and "run folder" in err
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_publish_name_with_a_slash_is_a_clear_error(run_copy, weights_env, tmp_path, capsys):
    assert cli("publish", str(run_copy), "--name", "mnist_cnn.a/b", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo publish: error: ") and "'mnist_cnn.a/b'" in err and "arch.tag" in err


def test_published_folders_and_files_honour_the_umask(run_copy, weights_env, tmp_path):
    out = tmp_path / "hub" / "mnist_cnn.x"
    old = os.umask(0o022)
    try:
        assert cli("publish", str(run_copy), "--name", "mnist_cnn.x", "--out", str(out), "--no-manifest") == 0
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {oct(0o644)}
    shutil.rmtree(out)
