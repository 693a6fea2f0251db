"""Fixtures for the adversarial suite: tiny runs, small and read-only file systems, and ``cli``.

A test module imports the fixtures it uses under their function names (``mnist_dir_fixture`` ...), as the
weights tests import ``weights_fixtures``; there is no conftest.py here, so that ``from conftest import``
in the other test modules keeps meaning tests/conftest.py.

Every case here is something a careless user or an attacker can do: a test reproduces it with real files,
real processes and a real HTTP server on 127.0.0.1, and checks that zoo either does the right thing or
stops with one clear line (``zoo CMD: error: ...``, exit code 2) without touching anything outside its
cache, run folders and output folders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from synth_data import make_idx_dataset

from zoo.cli import main as zoo_main

# The one line every expected failure prints: what went wrong, then after " — " what to do.
ERROR_LINE = re.compile(r"^zoo [a-z]+: error: \S.* — \S.*$")
TINY_TRAIN = ("--recipe", "fast", "--batch-size", "16", "--train-subset", "64", "--val-subset", "32")


def cli(*argv: str) -> int:
    """Run ``zoo ARGV`` in this process; returns its exit code."""
    return zoo_main([str(a) for a in argv])


def one_error_line(err: str) -> str:
    """``err`` (a failed command's stderr), checked to be one line of the form every zoo error takes."""
    err = err.strip()
    assert len(err.splitlines()) == 1 and ERROR_LINE.match(err), err[:2000]
    return err


def train_argv(data: Path, out: Path, *extra: str, epochs: int = 1, dataset: str = "mnist") -> list[str]:
    """``zoo train mnist_cnn`` on a synthetic IDX folder: 4 steps per epoch."""
    return ["train", "mnist_cnn", "--dataset", dataset, "--data-dir", str(data), *TINY_TRAIN,
            "--epochs", str(epochs), "--output", str(out), *extra]  # fmt: skip


@pytest.fixture(scope="session", name="mnist_dir")
def mnist_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("mnist") / "MNIST" / "raw", n_train=64, n_test=32)


@pytest.fixture(scope="session", name="fashion_dir")
def fashion_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("fashion") / "FashionMNIST" / "raw", n_train=64, n_test=32, seed=5)


@pytest.fixture(scope="session", name="finished_run")
def finished_run_fixture(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch ``zoo train`` run folder; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli(*train_argv(mnist_dir, out)) == 0
    return out


@pytest.fixture(name="run_copy")
def run_copy_fixture(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


# ------------------------------------------------------------------------------------------- file systems


def _mount(*args: str) -> bool:
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    return res.returncode == 0


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    can_mount = os.geteuid() == 0 and shutil.which("mount") is not None
    if not can_mount or not _mount("-t", "tmpfs", "-o", f"size={size}", "zoo-test", str(path)):
        pytest.skip("needs root and tmpfs to mount a small or read-only file system")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(name="small_fs")
def small_fs_fixture(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a full disk in miniature (skipped where it cannot be mounted)."""
    with _tmpfs(tmp_path / "small-fs", "512k") as path:
        yield path


@pytest.fixture(name="readonly_fs")
def readonly_fs_fixture(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    """A tmpfs and a function that makes it read-only (root ignores file modes, so a mount it must be)."""
    with _tmpfs(tmp_path / "ro-fs", "16m") as path:

        def make_readonly() -> None:
            if not _mount("-o", "remount,ro", str(path)):
                pytest.skip("cannot remount the tmpfs read-only here")

        yield path, make_readonly
