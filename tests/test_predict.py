"""`zoo predict`: the README's main job on the bundled images, any image size or mode, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SHARED_DATA
from PIL import Image

from zoo.cli import main as cli
from zoo.predict import SAMPLES_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_main_job_runs_offline_on_the_bundled_images():
    import torch

    import zoo

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZOO_OFFLINE": "1"}
    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "zoo"]
    out = subprocess.run([*cmd, "predict"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    records = json.loads((SAMPLES_DIR / "samples.json").read_text())
    right = 0
    for dataset, name in zoo.predict.SAMPLE_MODELS.items():
        # Each verdict must be the model's own answer on the raw test image, preprocessed the dataset's way.
        model = zoo.create_model(name, pretrained=True).eval()
        cfg = model.pretrained_cfg
        _, test_set, _ = (
            zoo.data.create_datasets(
                dataset, str(SHARED_DATA), splits=("val",), normalization=(cfg["mean"], cfg["std"])
            )
            if (SHARED_DATA / "MNIST").is_dir()
            else (None, None, None)
        )
        for record in (r for r in records if r["dataset"] == dataset):
            line = next(line for line in out.stdout.splitlines() if record["file"] in line)
            assert f"true {record['label']}" in line
            ok = line.rstrip().endswith("right")
            right += ok
            if test_set is not None:
                image, label = test_set[record["test_index"]]
                assert cfg["label_names"][label] == record["label"]
                with torch.no_grad():
                    predicted = cfg["label_names"][model(image.unsqueeze(0).float()).argmax().item()]
                assert f"predicted {predicted} " in line and ok == (predicted == record["label"])
    assert out.stdout.splitlines()[-1].startswith(f"{right}/{len(records)} ")
    assert right >= len(records) - 2  # the weights score 99.2 % and 93 % or more on the full test sets


def test_any_size_and_mode_is_converted_by_the_weights_transform(tmp_path, capsys):
    record = next(r for r in json.loads((SAMPLES_DIR / "samples.json").read_text()) if r["dataset"] == "mnist")
    big = tmp_path / "digit.jpg"
    Image.open(SAMPLES_DIR / record["file"]).convert("RGB").resize((112, 112), Image.BICUBIC).save(big, quality=95)
    rgba = tmp_path / "digit.png"
    Image.open(SAMPLES_DIR / record["file"]).convert("RGBA").resize((56, 56)).save(rgba)
    assert cli(["predict", "mnist_cnn.mnist", str(big), str(rgba), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    for path in (big, rgba):
        line = next(line for line in out.splitlines() if str(path) in line)
        ranked = line.split(": ", 1)[1].split(", ")
        assert len(ranked) == 3 and ranked[0].split()[0] == record["label"]


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a PNG")
    cases = [
        ["mnist_cnn.mnist", str(tmp_path / "missing.png")],
        ["mnist_cnn.mnist", str(not_image)],
        ["mnist_cnn.mnist", str(tmp_path)],
        ["mnist_cnn.mnist"],
        [str(not_image)],
    ]
    for args in cases:
        assert cli(["predict", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("zoo predict: error: ") and args[-1] in err, args  # names the input at fault


def test_weights_that_are_not_available_say_how_to_get_them(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    img = SAMPLES_DIR / json.loads((SAMPLES_DIR / "samples.json").read_text())[0]["file"]
    assert cli(["predict", "resnet50", str(img)]) == 2
    err = capsys.readouterr().err
    assert "resnet50.tv2_in1k" in err and "zoo download" in err  # the weights, and the command that gets them


def test_an_image_of_nan_pixels_gets_no_prediction(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((28, 28), np.nan, dtype=np.float32)).save(tmp_path / "nan.tif")  # a mode F TIFF
    assert cli(["predict", "mnist_cnn.mnist", str(tmp_path / "nan.tif")]) == 2
    err = capsys.readouterr().err
    assert "nan.tif" in err and "784" in err  # the file, and how many of its pixels are not finite


def test_topk_must_be_positive(capsys):
    img = SAMPLES_DIR / json.loads((SAMPLES_DIR / "samples.json").read_text())[0]["file"]
    assert cli(["predict", "mnist_cnn.mnist", str(img), "--topk", "0"]) == 2
    assert "topk=0" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mnist_cnn.mnist", "resnet20.fashion_mnist"])
def test_bundled_weights_carry_their_labels(name):
    import zoo

    model = zoo.create_model(name, pretrained=True)
    assert len(model.pretrained_cfg["label_names"]) == model.num_classes == 10
