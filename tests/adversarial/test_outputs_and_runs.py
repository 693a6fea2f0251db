"""The hostile-input issue's rules in zoo export, publish, train, eval and predict: outputs by the one rule, zoo's
folders known by content, values from files of a known shape, non-finite outputs refused, a full disk one line."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import cli, one_error_line, subprocess_env, train_argv

import zoo
from zoo.errors import ArgumentValueError, WeightsError
from zoo.export import ExportError, export_model
from zoo.pretrained.files import WeightsMetadata, load_file, read_metadata, save_weights
from zoo.utils.files import remove_stale_temp_files


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _digit() -> str:
    from zoo.predict import SAMPLES_DIR

    return str(sorted(SAMPLES_DIR.glob("mnist-*.png"))[0])


# ------------------------------------------------------------------------------ 1. user-named outputs


@pytest.mark.parametrize("users", ["notes.txt", "notes.txt.json", "link", "folder"])
def test_export_never_replaces_a_users_file_or_its_sidecar(tmp_path, capsys, users):
    notes = tmp_path / "notes.txt"
    target = {"notes.txt": notes, "notes.txt.json": notes, "link": tmp_path / "link", "folder": tmp_path / "folder"}
    out = target[users]
    if users == "notes.txt":
        notes.write_text("four years of work")
    elif users == "notes.txt.json":
        (tmp_path / "notes.txt.json").write_text('{"mine": true}')
    elif users == "link":
        (tmp_path / "real").write_text("mine")
        out.symlink_to(tmp_path / "real")
    else:
        out.mkdir()
    before = _files(tmp_path)
    assert cli("export", "mnist_cnn.mnist", "--format", "pt2", "--output", out) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(out) in err or f"{out}.json" in err
    assert _files(tmp_path) == before and (users != "link" or out.is_symlink())


def test_an_export_zoo_wrote_is_replaced(tmp_path):
    out = tmp_path / "m.pt2"
    assert cli("export", "mnist_cnn.mnist", "--format", "pt2", "--output", out) == 0
    first = out.stat().st_ino
    assert cli("export", "mnist_cnn.mnist", "--format", "pt2", "--output", out) == 0
    assert out.stat().st_ino != first and json.loads(Path(f"{out}.json").read_text())["format"] == "pt2"


KILLED_EXPORT = """
import os, signal, sys
real = os.replace
def replace(src, dst, *a, **k):  # the export's temporary file is written, its rename never happens
    if str(dst) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **k)
os.replace = replace
from zoo.cli import main
main(["export", "mnist_cnn.mnist", "--format", sys.argv[2], "--output", sys.argv[1]])
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_a_killed_exports_temporary_file_is_one_zoo_cleans(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    out = tmp_path / f"m.{fmt}"
    res = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(out), fmt], env=subprocess_env())
    assert res.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and re.fullmatch(rf"\.m\.{fmt}\.\d+\.\d+\.tmp", left[0]), left
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == left and not list(tmp_path.iterdir())
    (tmp_path / left[0]).write_bytes(b"half")  # left again: the next export of the file removes it
    assert cli("export", "mnist_cnn.mnist", "--format", fmt, "--output", out) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, f"{out.name}.json"]


# ------------------------------------------------------------------------------ 2. zoo's folders by content


@pytest.mark.slow
@pytest.mark.parametrize("users", ["README.md as a folder", "config.json"])
def test_publish_force_replaces_only_a_folder_zoo_published(finished_run, tmp_path, capsys, users):
    out = tmp_path / "hub"
    argv = ["publish", finished_run, "--name", "mnist_cnn.x", "--out", out, "--force"]
    assert cli(*argv) == 0 and cli(*argv) == 0  # zoo's own publication: replaced
    if users == "config.json":
        (out / "config.json").write_text('{"mine": true}')
    else:  # a folder where publish writes a file: the user's thesis
        (out / "README.md").unlink()
        (out / "README.md").mkdir()
        (out / "README.md" / "thesis.tex").write_text("\\chapter{One}")
    before = _files(out)
    assert cli(*argv) == 2
    assert str(out) in one_error_line(capsys.readouterr().err)
    assert _files(out) == before


def test_train_never_writes_into_a_folder_whose_run_json_is_not_zoos(mnist_dir, tmp_path, capsys):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": true}')
    (mine / "run.json").write_text('{"status": "done", "recipe": {}}')
    before = _files(mine)
    assert cli(*train_argv(mnist_dir, mine)) == 2
    assert str(mine) in one_error_line(capsys.readouterr().err)
    assert _files(mine) == before


# ------------------------------------------------------------------------------ 3. values from files


FOREIGN_ARGS = {
    "pretrained": True,
    "checkpoint_path": "/etc/passwd",
    "pretrained_cfg_overlay": {"mean": [0.0]},
    "features_only": True,
    "allow_nonfinite": True,
}


def _commands(run: Path, checkpoint: Path, mnist_dir: Path) -> dict[str, list]:
    return {
        "eval": ["eval", "mnist_cnn", "--checkpoint", checkpoint, "--dataset", "mnist", "--data-dir", mnist_dir,
                 "--output", run.parent / "ev"],
        "predict": ["predict", "--checkpoint", checkpoint, _digit()],
        "export": ["export", checkpoint, "--format", "pt2", "--output", run.parent / "m.pt2"],
        "publish": ["publish", run, "--name", "mnist_cnn.x", "--out", run.parent / "hub",
                    *(["--checkpoint", checkpoint] if checkpoint.suffix == ".safetensors" else [])],
    }  # fmt: skip


@pytest.mark.parametrize("key", list(FOREIGN_ARGS))
@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_a_config_json_passes_only_the_builders_own_arguments(run_copy, mnist_dir, capsys, key, command):
    config = json.loads((run_copy / "config.json").read_text())
    config["model_args"][key] = FOREIGN_ARGS[key]
    (run_copy / "config.json").write_text(json.dumps(config))
    assert cli(*_commands(run_copy, run_copy / "last.pt", mnist_dir)[command]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(run_copy / "config.json") in err and "model_args" in err and repr(key) in err


@pytest.mark.parametrize("key", ["pretrained", "checkpoint_path"])
@pytest.mark.parametrize("command", ["eval", "predict", "export", "publish"])
def test_a_weights_header_passes_only_the_builders_own_arguments(run_copy, mnist_dir, capsys, key, command):
    best = run_copy / "best.safetensors"
    meta = WeightsMetadata.from_header(read_metadata(best))
    meta = dataclasses.replace(meta, model_args={**(meta.model_args or {}), key: FOREIGN_ARGS[key]})
    forged = run_copy / "forged.safetensors"
    save_weights(load_file(best), forged, meta)
    assert cli(*_commands(run_copy, forged, mnist_dir)[command]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(forged) in err and "model_args" in err and repr(key) in err


def _label(run: Path, names: list[str]) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "label_names": names}))


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_label_names_that_do_not_count_the_head_are_refused(run_copy, mnist_dir, capsys, command):
    _label(run_copy, ["cat", "dog", "fish"])  # three names for a head of ten classes
    assert cli(*_commands(run_copy, run_copy / "last.pt", mnist_dir)[command]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(run_copy / "config.json") in err and "label_names" in err and "3" in err and "10" in err


HOSTILE = ["\x1b]0;pwned\x07zero", "one\nFAKE: 100.0%", *map(str, range(2, 10))]


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_label_names_are_printed_escaped(run_copy, mnist_dir, capsys, command):
    _label(run_copy, HOSTILE)
    argv = _commands(run_copy, run_copy / "last.pt", mnist_dir)[command]
    assert cli(*argv, *(["--topk", "10"] if command == "predict" else [])) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out  # no terminal escape reaches the terminal
    assert not any(line.startswith("FAKE") for line in out.splitlines())  # no forged line
    assert repr(HOSTILE[0]) in out and repr(HOSTILE[1]) in out  # each name shown, escaped


# ------------------------------------------------------------------------------ 5. non-finite outputs


def test_an_export_whose_outputs_are_not_finite_writes_nothing(tmp_path):
    model = zoo.create_model("mnist_cnn.mnist", pretrained=True)
    model.pretrained_cfg = {**model.pretrained_cfg, "std": (1e-40,)}  # the samples become inf, the logits NaN
    with pytest.raises(ExportError) as e:
        export_model(model, tmp_path / "m.pt2", "pt2", name="tiny-std")
    assert "tiny-std" in str(e.value) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, value", [("--atol", "nan"), ("--rtol", "inf"), ("--atol", "-1"), ("--batch", "0")])
def test_export_refuses_tolerances_that_cannot_fail(tmp_path, capsys, option, value):
    assert cli("export", "mnist_cnn.mnist", "--output", tmp_path / "m.onnx", option, value) == 2
    assert f"{option}=" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArgumentValueError) as e:
        export_model(zoo.create_model("mnist_cnn"), tmp_path / "m.onnx", atol=float("nan"))
    assert e.value.name == "--atol"  # type: ignore[attr-defined]


def test_an_evaluation_whose_outputs_are_not_finite_fails():
    from zoo.data.tensor import TensorImageDataset
    from zoo.evaluation import evaluate

    class Broken(torch.nn.Module):
        num_classes = 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((len(x), 2), float("nan"))

    data = TensorImageDataset(
        torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.arange(6) % 2, ["a", "b"], (0.5,), (0.5,)
    )
    with pytest.raises(WeightsError) as e:
        evaluate(Broken(), data, device="cpu")
    assert "6 of 6" in str(e.value)  # the count of images whose outputs are NaN


# ------------------------------------------------------------------------------ 7. a full disk


@pytest.mark.slow
def test_a_pt2_export_on_a_full_disk_is_one_line(small_fs):
    out = small_fs / "r20.pt2"  # about 1 MB: more than the 512 KiB file system holds
    res = subprocess.run([sys.executable, "-m", "zoo", "export", "resnet20.cifar10", "--format", "pt2", "--output",
                          str(out)], capture_output=True, text=True, env=subprocess_env())  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    err = one_error_line(res.stderr)
    assert str(out) in err and os.strerror(errno.ENOSPC) in err
    assert list(small_fs.iterdir()) == []
