"""Honest checkpoint selection: the kept weights are chosen on images held out of the training set, or are
the last epoch's; the test set is evaluated for the report only and never changes what is kept."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from synth_data import make_idx_dataset, make_image_folder, run_zoo
from test_train import Tiny
from torch.utils.data import Dataset

from zoo.data import ImageFolderDataset, TensorImageDataset, holdout_split, scan_image_folder
from zoo.pretrained.files import read_metadata
from zoo.training import fit
from zoo.training.loggers import read_metrics
from zoo.training.recipes import get_recipe
from zoo.utils.scores import score_text


class Stripes(Dataset):
    """8x8 RGB images whose class is the orientation of a noisy stripe pattern (learnable, not trivially)."""

    classes = ["rows", "columns"]

    def __init__(self, n: int, seed: int, flip_labels: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        stripes = (torch.arange(8) % 2).float().view(1, 8, 1).expand(3, 8, 8)
        pattern = torch.stack([stripes, stripes.transpose(1, 2)])[self.labels]
        self.images = pattern * 0.6 + torch.rand(n, 3, 8, 8, generator=g) * 1.2
        self.targets = 1 - self.labels if flip_labels else self.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.targets[i])


def _recipe(epochs: int):
    return get_recipe("fast", "cifar10").replace(
        epochs=epochs, batch_size=16, workers=0, rand_augment="", crop_pad=0, hflip=0.0, lr=0.2, warmup_epochs=0,
        ema=False,
    )  # fmt: skip


def test_holdout_split_is_seeded_disjoint_and_complete():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 2, 2).contiguous()
    ds = TensorImageDataset(images, torch.arange(50) % 5, list("abcde"), (0.5,), (0.5,))
    train, val = holdout_split(ds, 0.2, seed=3)
    ids = lambda d: set(d.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert len(val) == 10 and len(train) == 40
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(50))
    again_train, again_val = holdout_split(ds, 0.2, seed=3)
    assert torch.equal(again_val.images, val.images) and torch.equal(again_train.targets, train.targets)
    assert not torch.equal(holdout_split(ds, 0.2, seed=4)[1].images, val.images)
    assert train.classes == ds.classes and val.mean == ds.mean


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 10])
def test_holdout_split_rejects_fractions_outside_0_1(fraction):
    ds = TensorImageDataset(torch.zeros(20, 1, 2, 2, dtype=torch.uint8), torch.zeros(20), ["a"], (0.5,), (0.5,))
    with pytest.raises(ValueError) as e:
        holdout_split(ds, fraction, seed=0)
    assert str(fraction) in str(e.value)


def test_holdout_split_keeps_every_class_on_both_sides():
    """A small fraction of an unbalanced set still holds out one image of each class with two or more, and
    a set of one image per class cannot be split at all."""
    targets = torch.tensor([0] * 40 + [1] * 5 + [2] * 2 + [3])
    ds = TensorImageDataset(
        torch.zeros(len(targets), 1, 2, 2, dtype=torch.uint8), targets, list("abcd"), (0.5,), (0.5,)
    )
    train, val = holdout_split(ds, 0.01, seed=0)
    assert sorted(val.targets.tolist()) == [0, 1, 2] and sorted(set(train.targets.tolist())) == [0, 1, 2, 3]
    train, val = holdout_split(ds, 0.5, seed=0)
    assert torch.bincount(val.targets, minlength=4).tolist() == [20, 2, 1, 0]
    singles = TensorImageDataset(
        torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.arange(3), list("abc"), (0.5,), (0.5,)
    )
    with pytest.raises(ValueError) as e:
        holdout_split(singles, 0.5, seed=0)
    assert "0.5" in str(e.value)


def test_a_streamed_folders_held_out_part_is_not_augmented(tmp_path):
    make_image_folder(tmp_path / "photos", per_class=4, size=20)
    classes, samples = scan_image_folder(tmp_path / "photos")
    augment, plain = (lambda im: "augmented"), (lambda im: "plain")
    train, val = holdout_split(ImageFolderDataset(samples, classes, augment), 0.25, seed=0, eval_transform=plain)
    assert {p for p, _ in train.samples}.isdisjoint(p for p, _ in val.samples) and len(val) == 3
    assert train[0][0] == "augmented" and val[0][0] == "plain"
    with pytest.raises(ValueError, match="eval_transform"):
        holdout_split(ImageFolderDataset(samples, classes, augment), 0.25, seed=0)


@pytest.mark.slow
def test_the_test_set_never_changes_what_is_kept(tmp_path):
    """Two runs that differ only in their test set (one with every label flipped) keep the same epoch and
    the same weights, chosen by the held-out validation top-1."""
    train, val = Stripes(96, seed=0), Stripes(48, seed=1)
    kept = []
    for flip in (False, True):
        torch.manual_seed(0)
        model = Tiny()
        result = fit(model, train, val, _recipe(4), tmp_path / f"run{flip}", progress=False,
                     test_set=Stripes(48, seed=2, flip_labels=flip))  # fmt: skip
        rows = result.history
        assert result.best_metric_name == "val_acc1" and all(r["test_acc1"] is not None for r in rows)
        best_val = max(r["val_acc1"] for r in rows)
        assert result.best_epoch == next(r["epoch"] for r in rows if r["val_acc1"] == best_val)
        meta = read_metadata(tmp_path / f"run{flip}" / "best.safetensors")
        assert float(meta["zoo.test_acc1"]) == rows[result.best_epoch - 1]["test_acc1"]
        kept.append((result.best_epoch, load_file(tmp_path / f"run{flip}" / "best.safetensors"), rows))
    (epoch_a, weights_a, rows_a), (epoch_b, weights_b, rows_b) = kept
    assert epoch_a == epoch_b and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # The flipped test set scores the mirror image: it was measured, and it was ignored.
    assert [r["test_acc1"] for r in rows_a] == pytest.approx([100 - r["test_acc1"] for r in rows_b])


def test_without_a_validation_set_the_last_epoch_is_kept_whatever_the_test_says(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    result = fit(model, Stripes(64, seed=0), None, _recipe(3), tmp_path / "run", progress=False,
                 test_set=Stripes(32, seed=1))  # fmt: skip
    assert result.best_metric_name == "last_epoch" and result.best_epoch == 3
    saved = load_file(tmp_path / "run" / "best.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert json.loads((tmp_path / "run" / "run.json").read_text())["best_epoch"] == 3


@pytest.mark.slow
def test_zoo_train_holds_out_part_of_the_training_images_and_publish_reproduces_the_test_top1(weights_env, tmp_path):
    from zoo.publish import publish

    data = make_idx_dataset(tmp_path / "MNIST" / "raw", n_train=320, n_test=80)
    run = tmp_path / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(data), "--val-split", "0.25",
                  "--epochs", "3", "--batch-size", "32", "--output", str(run))  # fmt: skip
    assert res.returncode == 0, res.stderr
    record = json.loads((run / "run.json").read_text())
    assert (record["train_images"], record["val_images"], record["test_images"]) == (240, 80, 80)
    rows = read_metrics(run / "metrics.csv")
    assert all(r["val_acc1"] is not None and r["test_acc1"] is not None for r in rows)
    best_val = max(r["val_acc1"] for r in rows)
    assert record["best_epoch"] == next(r["epoch"] for r in rows if r["val_acc1"] == best_val)
    kept = rows[record["best_epoch"] - 1]
    shown = score_text(kept["test_acc1"], kept["test_count"])
    assert f"test top-1 {shown}" in res.stdout.splitlines()[-1]  # the kept epoch's test top-1, reported
    published = publish(run, "mnist_cnn.heldout", tmp_path / "published", data_dir=str(data))
    check = next(c for c in published.checks if c.name == "fresh evaluation")
    assert check.passed is True and f"recorded {kept['test_acc1']:.2f} %" in check.detail
    assert published.metrics["top1"] == pytest.approx(round(kept["test_acc1"], 2))


@pytest.mark.slow
@pytest.mark.realdata
def test_held_out_selection_on_real_mnist(shared_data, tmp_path):
    out = tmp_path / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(shared_data), "--epochs", "1",
                  "--val-split", "0.1", "--train-subset", "4000", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    record = json.loads((out / "run.json").read_text())
    # 10 % of each class of the 60,000 training images, rounded per class, before --train-subset takes 4,000
    assert (record["train_images"], record["test_images"]) == (4000, 10000) and abs(record["val_images"] - 6000) <= 5
    row = read_metrics(out / "metrics.csv")[0]
    assert row["val_acc1"] > 85 and row["test_acc1"] > 85  # 31 steps on real digits; chance is 10 %


def test_a_recipe_without_a_dataset_kind_says_which_settings_it_used():
    import warnings

    from zoo.training.recipes import get_recipe

    with pytest.warns(UserWarning) as warned:
        recipe = get_recipe("fast")
    assert len(warned) == 1 and "mnist" in str(warned[0].message)  # the dataset kind whose settings it used
    assert recipe.notes and "mnist" in recipe.notes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_recipe("fast", "cifar10").notes == []
