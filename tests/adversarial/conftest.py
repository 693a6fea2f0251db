"""Fixtures of the adversarial suite: tiny runs, small and read-only file systems.

Every case here is something a careless user or an attacker can do: a test reproduces it with real files,
real processes and a real HTTP server on 127.0.0.1, and checks that zoo either does the right thing or
stops with one clear line (``zoo CMD: error: ...``, exit code 2) without touching anything outside its
cache, run folders and output folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import cli, train_argv
from synth_data import make_idx_dataset


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
