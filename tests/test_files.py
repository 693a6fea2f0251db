"""Atomic writes: every writer syncs the file and its folder, and a failed write leaves the old file and no
temporary files behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from zoo.pretrained import fetch, manifest
from zoo.pretrained.files import save_weights
from zoo.utils.files import atomic_path, write_json, write_text_atomic


def test_atomic_write_replaces_or_leaves_the_file_untouched(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text_atomic(target, "old")
    assert target.read_text() == "old"

    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]

    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible until the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


# Every writer of a file that must never be seen half written, with a target path chosen by the test.
def _manifest_entry(url: str) -> dict:
    from helpers import entry_for

    return entry_for(None, {"type": "url", "url": url})


WRITERS = {
    "write_text_atomic": lambda target: write_text_atomic(target, "text"),
    "write_json": lambda target: write_json({"a": [1, 2]}, target),
    "save_weights": lambda target: save_weights({"w": torch.arange(4.0)}, target),
    "write_manifest": lambda target: manifest.write_manifest({"schema": 1, "weights": {}}, target),
    "update_entry": lambda target: manifest.update_entry(
        "mnist_cnn.x", _manifest_entry("https://h/x-0123abcd.pth"), path=target
    ),
}


@pytest.fixture
def fsynced(monkeypatch):
    """The (device, inode) of everything os.fsync is called on."""
    synced: set[tuple[int, int]] = set()
    real = os.fsync

    def recording(fd):
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return synced


def _ident(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("writer", WRITERS)
def test_each_writer_syncs_the_file_and_its_folder(tmp_path, fsynced, writer):
    target = tmp_path / "out" / "file"
    WRITERS[writer](target)
    assert _ident(target) in fsynced, "the file's data was not synced before the rename"
    assert _ident(target.parent) in fsynced, "the folder was not synced after the rename"
    assert _leftovers(target.parent) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_each_writer_leaves_no_temporary_file_when_it_fails(tmp_path, writer):
    target = tmp_path / "file"
    target.mkdir()  # a folder in the way: the final rename fails
    (target / "keep").write_text("mine")
    with pytest.raises(OSError):
        WRITERS[writer](target)
    assert _leftovers(tmp_path) == [] and (target / "keep").read_text() == "mine"


def test_url_download_syncs_the_file_and_its_folder(weights_env, mnist_file, fsynced):
    weights_env.add_hub("mnist_cnn.sync", mnist_file)
    path = fetch.fetch("mnist_cnn.sync")
    assert _ident(path) in fsynced and _ident(path.parent) in fsynced
    assert _leftovers(path.parent) == []
