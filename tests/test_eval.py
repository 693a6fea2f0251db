"""Evaluation: metrics against hand-computed values, and ``zoo eval`` on a trained run folder."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file
from synth_data import make_idx_dataset, run_zoo

import zoo
from zoo.cli import main as cli_main
from zoo.data import load_idx_dataset
from zoo.evaluation import evaluate, plot_confusion


class FixedLogits(nn.Module):
    """Ignores its input: always ranks the classes 2 > 0 > 1 > 3 > ... (logits 5, 4, 3, 2, ...)."""

    num_classes = 7

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.logits = torch.tensor([4.0, 3.0, 5.0, 2.0, 1.0, 0.0, -1.0])

    def forward(self, x):
        return self.logits.expand(len(x), -1) + 0 * self.dummy


def test_metrics_match_hand_computation():
    targets = [2, 2, 0, 1, 3, 4, 6, 5, 2, 6]
    data = [(torch.zeros(1, 2, 2), t) for t in targets]
    res = evaluate(FixedLogits(), data_as_dataset(data), batch_size=3)
    # top-1 predicts class 2 always; top-5 covers classes {2, 0, 1, 3, 4}.
    assert res["acc1"] == pytest.approx(100 * 3 / 10)
    assert res["acc5"] == pytest.approx(100 * 7 / 10)
    logits = torch.tensor([4.0, 3.0, 5.0, 2.0, 1.0, 0.0, -1.0])
    log_z = math.log(sum(math.exp(v) for v in logits.tolist()))
    expected_loss = sum(log_z - logits[t].item() for t in targets) / len(targets)
    assert res["loss"] == pytest.approx(expected_loss, rel=1e-6)  # float32 logits
    assert res["per_class_acc"] == [0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0]
    assert res["confusion"][6] == [0, 0, 2, 0, 0, 0, 0] and sum(map(sum, res["confusion"])) == 10


def data_as_dataset(items):
    class _DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    return _DS()


def test_classes_absent_from_the_set_have_no_accuracy(tmp_path):
    data = data_as_dataset([(torch.zeros(1, 2, 2), 2)] * 4)
    res = evaluate(FixedLogits(), data, label_names=list("abcdefg"))
    assert res["per_class_acc"][2] == 100.0 and res["per_class_acc"][0] is None
    png = plot_confusion(res["confusion"], res["label_names"], tmp_path / "cm.png")
    with Image.open(png) as im:
        assert im.format == "PNG"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    data = make_idx_dataset(root / "MNIST" / "raw", n_train=200, n_test=60)
    out = root / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(root), "--epochs", "2",
                  "--batch-size", "40", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    return data, out


@pytest.mark.slow
def test_zoo_eval_checkpoint(trained, tmp_path):
    data, run = trained
    out_json = tmp_path / "results.json"
    res = run_zoo("zoo", "eval", "mnist_cnn", "--checkpoint", str(run / "best.safetensors"), "--dataset", "mnist",
                  "--data-dir", str(data), "--json", str(out_json), "--output", str(tmp_path / "ev"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    results = json.loads(out_json.read_text())
    printed = (f"{results['acc1']:.2f}", f"{results['acc5']:.2f}", f"{results['loss']:.4f}")
    assert all(number in res.stdout for number in printed)
    # Per-class lines name every digit with its accuracy.
    for name, acc in zip(results["label_names"], results["per_class_acc"], strict=True):
        assert any(line.split()[:2] == [name, f"{acc:.2f}"] for line in res.stdout.splitlines())
    png = tmp_path / "ev" / "confusion.png"  # a new folder: nothing is written into the run
    assert str(png) in res.stdout.splitlines()[-1]
    assert json.loads((tmp_path / "ev" / "results.json").read_text()) == results
    with Image.open(png) as im:
        assert im.format == "PNG" and min(im.size) > 300
    # Independent check: a plain loop over the IDX test images with the saved weights.
    model = zoo.create_model("mnist_cnn")
    model.load_state_dict(load_file(run / "best.safetensors"))
    model.eval()
    test = load_idx_dataset("mnist", data, "test")
    x = (test.images.float() / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert results["acc1"] == pytest.approx(100 * (pred == test.targets).sum().item() / len(pred), abs=1e-9)
    assert results["count"] == 60
    # The run's own record of the kept (last) epoch's test top-1 agrees.
    from zoo.training.loggers import read_metrics

    kept = json.loads((run / "run.json").read_text())["best_epoch"]
    assert kept == 2 and results["acc1"] == pytest.approx(read_metrics(run / "metrics.csv")[kept - 1]["test_acc1"])


@pytest.mark.slow
def test_zoo_eval_run_folder_and_errors(trained, tmp_path, capsys):
    data, run = trained
    common = ["--dataset", "mnist", "--data-dir", str(data)]
    args = ["eval", "mnist_cnn", "--checkpoint", str(run), *common, "--confusion", str(tmp_path / "c.png")]
    assert cli_main([*args, "--output", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "c.png").is_file() and "top-1" in capsys.readouterr().out
    assert cli_main(["eval", "resnet20", "--checkpoint", str(run), *common]) == 2
    err = capsys.readouterr().err
    assert "'mnist_cnn'" in err and "'resnet20'" in err  # what the run trained, and what was named
    assert cli_main(["eval", "mnist_cnn", "--checkpoint", str(tmp_path / "nope.safetensors"), *common]) == 2
    assert str(tmp_path / "nope.safetensors") in capsys.readouterr().err
    no_data = ["--dataset", "mnist", "--data-dir", str(tmp_path)]
    assert cli_main(["eval", "mnist_cnn", "--checkpoint", str(run), *no_data]) == 2
    assert "t10k-images-idx3-ubyte[.gz]" in capsys.readouterr().err  # the file it looked for
    # last.pt is built from the run's config.json: the same weights as best.safetensors (the last epoch was kept)
    assert cli_main(["eval", "mnist_cnn", "--checkpoint", str(run / "last.pt"), *common, "--output",
                     str(tmp_path / "ev-last"), "--json", str(tmp_path / "last.json")]) == 0  # fmt: skip
    from_best = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert json.loads((tmp_path / "last.json").read_text())["acc1"] == from_best["acc1"]
    damaged = Path(shutil.copytree(run, tmp_path / "damaged"))
    config = json.loads((damaged / "config.json").read_text())
    (damaged / "config.json").write_text(json.dumps({**config, "model_args": [1, 2]}))
    assert cli_main(["eval", "mnist_cnn", "--checkpoint", str(damaged / "last.pt"), *common]) == 2
    err = capsys.readouterr().err
    assert str(damaged / "config.json") in err and "model_args=[1, 2]" in err


def test_zoo_eval_replaces_only_an_evaluation_folder_it_wrote(trained, tmp_path, capsys):
    """Rule 2 of the hostile-input issue: a folder is zoo eval's by its content, never by its entries' names."""
    data, run = trained
    argv = ["eval", "mnist_cnn", "--checkpoint", str(run), "--dataset", "mnist", "--data-dir", str(data)]
    out = tmp_path / "ev"
    assert cli_main([*argv, "--output", str(out)]) == 0
    assert cli_main([*argv, "--output", str(out)]) == 0  # its own folder: written again
    (tmp_path / "user" / "results.json").mkdir(parents=True)  # a folder named as zoo eval's file
    (tmp_path / "user" / "results.json" / "thesis.tex").write_text("mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "results.json").write_text('{"notes": 1}')  # a JSON file that is not a result
    for folder in (tmp_path / "user", tmp_path / "mine"):
        assert cli_main([*argv, "--output", str(folder)]) == 2
        assert str(folder) in capsys.readouterr().err
    assert (tmp_path / "user" / "results.json" / "thesis.tex").read_text() == "mine"
    assert json.loads((tmp_path / "mine" / "results.json").read_text()) == {"notes": 1}


def test_zoo_eval_of_arch_tag_evaluates_those_weights(trained, tmp_path):
    """Weights named as arch.tag are evaluated without --pretrained, as zoo predict takes them."""
    data, _ = trained
    out = tmp_path / "ev"
    argv = ["eval", "mnist_cnn.mnist", "--dataset", "mnist", "--data-dir", str(data), "--output", str(out)]
    assert cli_main(argv) == 0
    assert json.loads((out / "results.json").read_text())["source"] == "mnist_cnn.mnist (pretrained)"
    assert cli_main(["eval", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(data)]) == 2  # no weights named


@pytest.mark.slow
def test_zoo_eval_refuses_a_diverged_checkpoint(trained, tmp_path, capsys):
    from safetensors.torch import save_file

    data, run = trained
    state = load_file(run / "best.safetensors")
    name = next(k for k, t in state.items() if t.is_floating_point())
    state[name][0] = float("nan")
    broken = tmp_path / "diverged.safetensors"
    save_file(state, broken)
    common = ["--dataset", "mnist", "--data-dir", str(data)]
    assert cli_main(["eval", "mnist_cnn", "--checkpoint", str(broken), *common]) == 2
    err = capsys.readouterr().err
    assert name in err and str(broken) in err  # the tensor at fault, in the file at fault


@pytest.mark.slow
def test_zoo_eval_of_an_image_folder_run_uses_its_held_out_images(tmp_path, capsys):
    from synth_data import make_image_folder

    from zoo.training.loggers import read_metrics

    make_image_folder(tmp_path / "photos", per_class=6, size=20)
    spec = f"imagefolder:{tmp_path / 'photos'}"
    run = tmp_path / "run"
    # A split other than eval's defaults (fraction 0.1, seed 42): eval must take the run's from its run.json.
    assert cli_main(["train", "resnet20", "--dataset", spec, "--val-split", "0.34", "--seed", "7", "--epochs", "1",
                     "--batch-size", "4", "--workers", "0", "--mixup", "0", "--cutmix", "0",
                     "--output", str(run)]) == 0  # fmt: skip
    recorded = json.loads((run / "run.json").read_text())
    assert (recorded["seed"], recorded["val_split"], recorded["val_images"]) == (7, 0.34, 6)
    out_json = tmp_path / "eval.json"
    assert cli_main(["eval", "resnet20", "--checkpoint", str(run), "--dataset", spec, "--workers", "0",
                     "--json", str(out_json), "--output", str(tmp_path / "ev")]) == 0  # fmt: skip
    results = json.loads(out_json.read_text())
    # The same 6 images the run validated on: their count, and the loss the run measured on them.
    val_row = read_metrics(run / "metrics.csv")[0]
    assert results["count"] == 6 and [sum(row) for row in results["confusion"]] == [2, 2, 2]
    assert results["loss"] == pytest.approx(val_row["val_loss"], rel=1e-5)
    assert results["acc1"] == pytest.approx(val_row["val_acc1"])


def test_zoo_eval_names_the_cifar_test_set_it_measured(tmp_path, capsys):
    """The original batches are "the original test set"; the same images as files say so, and score the same."""
    import pickle

    import numpy as np
    from synth_data import make_cifar

    batches = make_cifar(tmp_path / "orig")
    with open(batches / "test_batch", "rb") as f:
        test = pickle.load(f)
    images = test["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    folder = tmp_path / "files"
    for split in ("train", "test"):  # train/ only completes the layout: every class needs images there
        rows, labels = images, test["labels"]
        for k in range(10):
            (folder / split / f"class{k}").mkdir(parents=True)
        for i, (arr, label) in enumerate(zip(rows, labels, strict=True)):
            Image.fromarray(np.ascontiguousarray(arr)).save(folder / split / f"class{label}" / f"{i:04d}.png")
    found = {}
    for data_dir, named in ((tmp_path / "orig", "original test set"), (folder, "test set as image files")):
        out_json = tmp_path / f"{data_dir.name}.json"
        args = ["eval", "resnet20.cifar10", "--pretrained", "--dataset", "cifar10", "--data-dir", str(data_dir),
                "--json", str(out_json), "--confusion", str(tmp_path / f"{data_dir.name}.png")]  # fmt: skip
        assert cli_main(args) == 0
        assert f"resnet20.cifar10 on cifar10 ({named})" in capsys.readouterr().out
        found[named] = json.loads(out_json.read_text())
        assert found[named]["eval_set"] == named and found[named]["count"] == 40
    # Lossless files hold the same pixels: the same predictions, whichever layout they came in.
    assert found["original test set"]["confusion"] == found["test set as image files"]["confusion"]


@pytest.mark.slow
def test_zoo_eval_of_a_new_folder_measures_all_of_it_and_leaves_the_run_alone(tmp_path, capsys):
    from synth_data import make_image_folder

    make_image_folder(tmp_path / "photos", per_class=6, size=20)
    make_image_folder(tmp_path / "new", per_class=30, size=20)
    run = tmp_path / "run"
    assert cli_main(["train", "resnet20", "--dataset", f"imagefolder:{tmp_path / 'photos'}", "--epochs", "1",
                     "--batch-size", "4", "--workers", "0", "--output", str(run)]) == 0  # fmt: skip
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    new = ["eval", "resnet20", "--checkpoint", str(run), "--dataset", f"imagefolder:{tmp_path / 'new'}",
           "--workers", "0"]  # fmt: skip
    for out, split, count in (("all", [], 90), ("held", ["--split", "test", "--val-split", "0.1"], 9)):
        assert cli_main([*new, *split, "--output", str(tmp_path / out)]) == 0
        assert json.loads((tmp_path / out / "results.json").read_text())["count"] == count
        assert (tmp_path / out / "confusion.png").is_file()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # The run's own folder is not a new one, and is never an evaluation's output.
    assert cli_main([*new, "--output", str(run)]) == 2
    assert str(run) in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_zoo_eval_says_when_the_runs_held_out_images_changed(tmp_path, capsys):
    from synth_data import make_image_folder

    make_image_folder(tmp_path / "photos", per_class=6, size=20)
    spec = f"imagefolder:{tmp_path / 'photos'}"
    run = tmp_path / "run"
    assert cli_main(["train", "resnet20", "--dataset", spec, "--val-split", "0.34", "--epochs", "1",
                     "--batch-size", "4", "--workers", "0", "--output", str(run)]) == 0  # fmt: skip
    args = ["eval", "resnet20", "--checkpoint", str(run), "--dataset", spec, "--workers", "0"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same images: nothing to say
        assert cli_main([*args, "--output", str(tmp_path / "a")]) == 0
    make_image_folder(tmp_path / "photos", classes=("cat",), per_class=9, size=20)  # three more cats
    recorded = json.loads((run / "run.json").read_text())["data_identity"]["val_data"]["sha256"]
    with pytest.warns(UserWarning) as warned:
        assert cli_main([*args, "--output", str(tmp_path / "b")]) == 0
    assert any(recorded[:12] in str(w.message) for w in warned)  # names the images the run validated on
