"""Rule 1 of the hostile-input issue: a path the user names for zoo to write is new, a regular file zoo wrote, or
(with --force) a regular file; never a link, a folder or a device, and a user's file is never replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import cli, one_error_line

import zoo


def _checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "run.pth"
    torch.save(zoo.create_model("mnist_cnn").state_dict(), path)
    return path


def _write(tmp_path: Path, command: str, out: Path, *extra: str) -> int:
    if command == "bench":
        return cli("bench", "mnist_cnn", "--steps", "1", "--warmup", "0", "--format", "csv", "--output", out, *extra)
    return cli("convert", "checkpoint", _checkpoint(tmp_path), "--model", "mnist_cnn", "--out", out, *extra)


@pytest.mark.parametrize("command", ["bench", "convert"])
@pytest.mark.parametrize("kind", ["notes", "link", "folder"])
def test_a_user_named_output_never_replaces_what_zoo_did_not_write(tmp_path, capsys, command, kind):
    notes = tmp_path / "notes.txt"
    notes.write_text("four years of work")
    out = {"notes": notes, "link": tmp_path / "link", "folder": tmp_path / "folder"}[kind]
    if kind == "link":
        out.symlink_to(notes)
    elif kind == "folder":
        out.mkdir()
    assert _write(tmp_path, command, out) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(out) in err
    assert notes.read_text() == "four years of work" and (kind != "link" or out.is_symlink())


@pytest.mark.parametrize("command", ["bench", "convert"])
def test_an_output_zoo_wrote_is_replaced_and_a_new_one_written(tmp_path, command):
    out = tmp_path / ("results.csv" if command == "bench" else "w.safetensors")
    assert _write(tmp_path, command, out) == 0
    first = out.stat().st_ino
    assert _write(tmp_path, command, out) == 0  # zoo's own file: replaced (a new inode, written atomically)
    assert out.stat().st_ino != first


def test_force_replaces_a_users_regular_file_but_never_a_device(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("scratch")
    assert cli("bench", "mnist_cnn", "--steps", "1", "--warmup", "0", "--output", notes, "--force") == 0
    assert "infer" in notes.read_text()
    if os.geteuid() == 0:  # a character device stands where the output goes (as root: /dev/null itself)
        device = tmp_path / "null"
        os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        assert cli("bench", "mnist_cnn", "--steps", "1", "--warmup", "0", "--output", device, "--force") == 2
        assert str(device) in one_error_line(capsys.readouterr().err)
        assert not device.is_file()
