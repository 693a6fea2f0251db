"""Fine-tuning from published weights with either stem: a real resnet18 weights file served from the manifest."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import IMAGENET_FIELDS
from synth_data import make_cifar, make_image_folder

import zoo.training.trainer
from zoo.cli import main as cli_main
from zoo.pretrained.files import load_file
from zoo.training.loggers import read_metrics

NAME = "resnet18.synth_in1k"


@pytest.fixture
def imagenet_weights(weights_env, resnet18_file):
    """torchvision's resnet18 (7x7 stem, 1000 classes) as a bundled manifest entry with ImageNet preprocessing."""
    weights_env.add_bundled(NAME, resnet18_file, **IMAGENET_FIELDS)
    return load_file(resnet18_file.path)


def test_cifar_stem_takes_every_tensor_but_the_first_convolution(imagenet_weights):
    from zoo.training.finetune import build_training_model

    with pytest.warns(UserWarning) as warned:
        model = build_training_model(NAME, True, stem="cifar", num_classes=3)
    assert any("conv1.weight" in str(w.message) for w in warned)  # the tensor left freshly initialised
    state = model.state_dict()
    assert model.stem == "cifar" and tuple(state["conv1.weight"].shape) == (64, 3, 3, 3)
    loaded = [k for k in state if k not in ("conv1.weight", "fc.weight", "fc.bias")]
    assert len(loaded) > 100 and all(torch.equal(state[k], imagenet_weights[k]) for k in loaded)
    # The model's own input size with the weights' normalisation.
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert tuple(model.pretrained_cfg["mean"]) == tuple(IMAGENET_FIELDS["mean"])


@pytest.fixture
def seen_shapes(monkeypatch):
    """The image sizes zoo train hands fit() for training and for evaluation (validation, else test)."""
    shapes: dict[str, tuple[int, ...]] = {}
    real_fit = zoo.training.trainer.fit

    def recording_fit(model, train_set, val_set, *args, **kwargs):
        evaluated = val_set if val_set is not None else kwargs["test_set"]
        shapes["train"], shapes["val"] = tuple(train_set[0][0].shape), tuple(evaluated[0][0].shape)
        return real_fit(model, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(zoo.training.trainer, "fit", recording_fit)  # what zoo.training.train calls
    return shapes


@pytest.mark.slow
@pytest.mark.parametrize("stem, size", [("cifar", 32), ("imagenet", 224)])
def test_fine_tune_an_image_folder_with_either_stem(imagenet_weights, seen_shapes, tmp_path, stem, size):
    make_image_folder(tmp_path / "photos", per_class=2, size=40)  # one step on 3 images, validation on 3
    spec = f"imagefolder:{tmp_path / 'photos'}"
    run = tmp_path / "run"
    argv = ["train", NAME, "--pretrained", "--stem", stem, "--dataset", spec, "--val-split", "0.5", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--mixup", "0", "--cutmix", "0", "--output", str(run)]  # fmt: skip
    assert cli_main(argv) == 0
    assert seen_shapes == {"train": (3, size, size), "val": (3, size, size)}
    config = json.loads((run / "config.json").read_text())
    assert config["model_args"]["stem"] == stem and config["pretrained_cfg"]["input_size"] == [3, size, size]
    assert config["pretrained_cfg"]["mean"] == IMAGENET_FIELDS["mean"]
    # zoo eval rebuilds the run's model and transform: the same loss on the same held-out images.
    out_json = tmp_path / "eval.json"
    assert cli_main(["eval", "resnet18", "--checkpoint", str(run), "--dataset", spec, "--workers", "0",
                     "--json", str(out_json), "--output", str(tmp_path / "ev")]) == 0  # fmt: skip
    val_row = read_metrics(run / "metrics.csv")[0]
    assert json.loads(out_json.read_text())["loss"] == pytest.approx(val_row["val_loss"], rel=1e-4)


def test_imagenet_stem_weights_on_cifar_validate_at_the_training_size(imagenet_weights, seen_shapes, tmp_path):
    make_cifar(tmp_path, "cifar10", per_batch=2, n_test=4)  # one step on 10 images
    argv = ["train", NAME, "--pretrained", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1",
            "--batch-size", "10", "--workers", "0", "--output", str(tmp_path / "run")]  # fmt: skip
    assert cli_main(argv) == 0
    assert seen_shapes == {"train": (3, 32, 32), "val": (3, 32, 32)}


def test_a_vgg_changing_stem_keeps_the_convolutions_and_gets_a_fresh_head():
    """VGG's CIFAR stem ends in its own 512-wide head: ImageNet weights give it every convolution, no head.

    Shapes only (the meta device): the ImageNet VGG head alone is 400 MB.
    """
    from zoo.pretrained.load import fit_state_dict

    with torch.device("meta"):
        weights = zoo.create_model("vgg11_bn", num_classes=10).state_dict()
        model = zoo.create_model("vgg11_bn", stem="cifar", num_classes=10)
    with pytest.warns(UserWarning) as warned:
        state, _ = fit_state_dict(model, weights, "vgg11_bn weights", False, False, stacklevel=2, adapt_stem=True)
    assert any("classifier" in str(w.message) for w in warned)  # the module left freshly initialised
    features = [k for k in weights if k.startswith("features.")]
    # 8 convolutions (weight, bias), each with a BatchNorm (weight, bias, running mean, var, batches tracked)
    assert sorted(state) == sorted(features) and len(features) == 8 * (2 + 5)
    assert not any(k.startswith("classifier.") for k in state)
    with pytest.raises(zoo.errors.WeightsError, match="classifier"):  # without adapt_stem it does not fit
        fit_state_dict(model, weights, "vgg11_bn weights", False, False, stacklevel=2)


@pytest.mark.slow
def test_training_starts_from_a_file_with_initial_checkpoint(tmp_path):
    """timm's --initial-checkpoint: with a zero learning rate the kept weights are the file's own."""
    from safetensors.torch import load_file
    from synth_data import make_idx_dataset, run_zoo

    make_idx_dataset(tmp_path / "MNIST" / "raw", n_train=64, n_test=32)
    start = zoo.create_model("mnist_cnn")
    torch.nn.init.constant_(start.fc.bias, 0.25)  # unlike any fresh initialisation
    zoo.save_weights(start, tmp_path / "start.safetensors")
    out = tmp_path / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                  "--batch-size", "32", "--lr", "0", "--min-lr", "0", "--warmup-epochs", "0", "--no-ema",
                  "--initial-checkpoint", str(tmp_path / "start.safetensors"), "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    kept = load_file(out / "best.safetensors")
    assert all(torch.equal(kept[k], v) for k, v in start.state_dict().items())
    both = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(tmp_path), "--pretrained",
                   "--initial-checkpoint", str(tmp_path / "start.safetensors"))  # fmt: skip
    assert both.returncode == 2 and "--pretrained" in both.stderr and "--initial-checkpoint" in both.stderr


def _tar_gz(folder, archive):
    import tarfile

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")
    return archive


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "start", "classes", "size"),
    [
        ("cifar10", ["--pretrained", "--stem", "cifar"], 10, 32),
        ("folder", ["--pretrained", "--stem", "cifar"], 3, 32),
        ("folder", ["--pretrained"], 3, 224),
        ("folder", [], 3, 224),
        ("tar.gz", [], 3, 224),
    ],
)
def test_zoo_train_builds_its_model_once(imagenet_weights, tmp_path, monkeypatch, dataset, start, classes, size):
    """A dataset's classes and channels are known before its images are read (an image folder's from its class
    folders, even inside a .tar.gz): the one model is built first and its input size sizes the folder's images."""
    import zoo.training.finetune as finetune

    built = []
    real = finetune.build_training_model
    monkeypatch.setattr(finetune, "build_training_model", lambda *a, **k: built.append(k) or real(*a, **k))
    if dataset == "cifar10":
        make_cifar(tmp_path, "cifar10", per_batch=2, n_test=4)
        data = ["--dataset", "cifar10", "--data-dir", str(tmp_path)]
    else:
        make_image_folder(tmp_path / "photos", per_class=2, size=40)
        spec = tmp_path / "photos"
        if dataset == "tar.gz":
            spec = _tar_gz(spec, tmp_path / "photos.tar.gz")
        data = ["--dataset", f"imagefolder:{spec}", "--val-split", "0.5", "--mixup", "0", "--cutmix", "0"]
    argv = ["train", NAME, *start, *data, "--epochs", "1", "--batch-size", "10", "--workers", "0",
            "--output", str(tmp_path / "run")]  # fmt: skip
    assert cli_main(argv) == 0
    assert len(built) == 1 and built[0]["num_classes"] == classes and built[0]["in_chans"] == 3
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["num_classes"] == classes and config["pretrained_cfg"]["input_size"] == [3, size, size]
    if start:
        assert config["pretrained_cfg"]["mean"] == IMAGENET_FIELDS["mean"]
