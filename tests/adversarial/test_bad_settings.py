"""Settings with no sane meaning: NaN/Inf hyper-parameters, absurd class counts, input sizes and thread counts.

Each was a traceback (allocator failures, torch's own ValueError), a segmentation fault, or worse a silent run
with NaN in run.json. Each must now stop with one line, ``zoo CMD: error: ... — ...``, exit code 2, that names
the value and what would be valid, before anything is allocated or written.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, one_error_line

from zoo.errors import ArgumentValueError, DeviceError, RecipeError


def _train(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--output", str(out), *extra]


# ---------------------------------------------------------------------------------------- NaN and Inf recipes


def _float_fields() -> list[str]:
    from zoo.training.recipes import Recipe

    return [f.name for f in dataclasses.fields(Recipe) if f.type in (float, "float")]


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("name", _float_fields())
def test_every_float_recipe_field_must_be_finite(name, value):
    from zoo.training.recipes import Recipe

    with pytest.raises(RecipeError) as e:
        Recipe(**{name: value})
    assert e.value.name == name and e.value.value is value


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--lr", "nan"], "lr=nan"),
        (["--set", "label_smoothing=nan"], "label_smoothing=nan"),
        (["--warmup-epochs", "inf"], "warmup_epochs=inf"),
        (["--ema-decay", "nan"], "ema_decay=nan"),
        (["--grad-clip", "inf"], "grad_clip=inf"),
        (["--set", "weight_decay=nan"], "weight_decay=nan"),
    ],
)
def test_nan_and_inf_settings_are_refused_before_a_run_starts(mnist_dir, tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    assert cli(*_train(mnist_dir, out, *extra)) == 2
    err = one_error_line(capsys.readouterr().err)
    assert named in err, err
    assert not out.exists()  # no run.json with NaN in it


# ------------------------------------------------------------------------------ class and channel counts


def test_num_classes_and_in_chans_have_an_upper_bound():
    from zoo.models.base import MAX_NUM_CLASSES, check_common
    from zoo.models.cfg import MAX_CHANNELS

    check_common(MAX_NUM_CLASSES, MAX_CHANNELS)  # the limits themselves are allowed
    with pytest.raises(ArgumentValueError) as err:
        check_common(MAX_NUM_CLASSES + 1, 3)
    assert (err.value.name, err.value.value) == ("num_classes", MAX_NUM_CLASSES + 1)
    with pytest.raises(ArgumentValueError) as err:
        check_common(10, MAX_CHANNELS + 1)
    assert (err.value.name, err.value.value) == ("in_chans", MAX_CHANNELS + 1)


@pytest.mark.parametrize(
    "argv, named, limit",
    [
        (["info", "resnet20", "--num-classes", "1000000000"], "num_classes=1000000000", "1,000,000"),
        (["bench", "resnet20", "--num-classes", "2000000000"], "num_classes=2000000000", "1,000,000"),
        (["info", "resnet20", "--in-chans", "1000000000"], "in_chans=1000000000", "1024"),
    ],
)
def test_a_huge_class_or_channel_count_is_one_line_not_an_allocator_failure(capsys, argv, named, limit):
    assert cli(*argv, *(["--steps", "1", "--warmup", "0"] if argv[0] == "bench" else [])) == 2
    err = one_error_line(capsys.readouterr().err)
    assert named in err and limit in err, err


# ------------------------------------------------------------------------------------------- input sizes


@pytest.mark.parametrize(
    "argv, named, limit",
    [
        (["info", "resnet20", "--img-size", "100000"], "100000", "4096"),
        (["info", "resnet20", "--input-size", "3", "20000", "20000"], "20000", "4096"),
        (["bench", "resnet20", "--img-size", "100000"], "100000", "4096"),
        (["bench", "resnet20", "--input-size", "2000", "32", "32"], "2000", "1024"),
        (["bench", "resnet20", "--input-size", "3", "4096", "4096", "--batch-size", "100000"],
         "batch_size=100000 of 3x4096x4096", "GiB"),
        (["bench", "mnist_cnn", "--batch-size", "1000000000"], "batch_size=1000000000 of 1x28x28", "GiB"),
    ],
)  # fmt: skip
def test_an_input_that_cannot_fit_is_one_line_not_an_allocator_failure(capsys, argv, named, limit):
    assert cli(*argv, *(["--steps", "1", "--warmup", "0"] if argv[0] == "bench" else [])) == 2
    err = one_error_line(capsys.readouterr().err)
    assert named in err and limit in err, err


def test_a_batch_is_checked_against_the_device_memory(monkeypatch):
    import torch

    import zoo.benchmark
    from zoo.benchmark import benchmark_model, check_bench_size

    sample = 1 * 28 * 28 * 4  # bytes of one float32 MNIST image
    monkeypatch.setattr(zoo.benchmark, "device_memory_bytes", lambda device: 2 * sample * 10)  # room for 10
    cpu = torch.device("cpu")
    check_bench_size(10, (1, 28, 28), cpu)
    with pytest.raises(ArgumentValueError) as err:
        check_bench_size(11, (1, 28, 28), cpu)
    assert "batch_size=11" in str(err.value) and "at most 10" in err.value.hint
    with pytest.raises(ArgumentValueError) as err:
        benchmark_model("resnet20", batch_size=1, input_size=(3, 5000, 32), steps=1, warmup=0)
    assert err.value.name == "input_size" and err.value.value == (3, 5000, 32)


# --------------------------------------------------------------------------------------------- threads


def test_set_threads_has_an_upper_bound():
    from zoo.utils import max_threads, set_threads

    assert max_threads() == 4 * (os.cpu_count() or 1)
    with pytest.raises(DeviceError) as err:
        set_threads(max_threads() + 1)
    assert err.value.value == max_threads() + 1 and str(max_threads()) in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["bench", "train"])
def test_too_many_threads_is_one_line_not_a_crash(mnist_dir, tmp_path, command):
    # In a child process: before the fix torch.set_num_threads(100000) killed the process with SIGSEGV.
    out = tmp_path / "run"
    argv = ["bench", "mnist_cnn", "--steps", "1", "--warmup", "0"] if command == "bench" else _train(mnist_dir, out)
    res = subprocess.run([sys.executable, "-m", "zoo", *argv, "--threads", "100000"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    err = one_error_line(res.stderr)
    assert f"zoo {command}: error: " in err and "100000" in err and str(4 * (os.cpu_count() or 1)) in err, err
    assert not out.exists()
