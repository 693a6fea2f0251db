"""Numbers a learner can trust: every accuracy with the images it rests on and its 95 % interval, one chance rule
for train and eval, the images that chose an epoch never called a test set, the console equal to metrics.csv;
on the real MNIST and on the real photos of ../shared/data/hymenoptera."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import SHARED_DATA, cli, epoch_lines_match

from zoo.training.loggers import read_metrics
from zoo.utils.scores import chance_rate, chance_warning, score_text, wilson_interval

PHOTOS = SHARED_DATA / "hymenoptera"


@pytest.mark.parametrize("hits,count", [(6, 9), (0, 9), (9, 9), (200, 600), (9220, 10000), (1, 1)])
def test_the_interval_is_wilsons(hits, count):
    stats = pytest.importorskip("scipy.stats")
    ci = stats.binomtest(hits, count).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(hits, count)
    assert (lo, hi) == pytest.approx((100 * ci.low, 100 * ci.high), abs=0.05)  # scipy: the exact quantile, not 1.96


def test_a_score_says_its_images_and_its_interval_where_it_is_wide():
    assert "(6/9, 95 % CI 35" in score_text(100 * 6 / 9, 9)
    assert "CI" not in score_text(92.2, 100_000) and "(92,200/100,000)" in score_text(92.2, 100_000)


def test_one_chance_rule_for_balanced_and_unbalanced_sets():
    assert chance_rate([50, 50, 50]) == pytest.approx(100 / 3) and chance_rate([90, 10]) == pytest.approx(90)
    assert chance_warning(100 * 6 / 9, 9, 50.0, "x")  # 35-88 reaches 50
    assert not chance_warning(100 * 6 / 9, 9, 100 / 3, "x")  # 35-88 is above 33.3
    assert chance_warning(90.0, 100, 90.0, "x")  # the majority class of an unbalanced set is chance
    assert chance_warning(5.0, 100, 50.0, "x")  # below chance is no better than it


@pytest.fixture(name="few_photos")
def few_photos_fixture(tmp_path: Path) -> Path:
    """Lab10-4's situation: a few real photos a class, no val/ or test/, so a small share is held out."""
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos not found at {PHOTOS} (set ZOO_SHARED_DATA)")
    folder = tmp_path / "photos"
    for cls in ("ants", "bees"):
        (folder / cls).mkdir(parents=True)
        for photo in sorted((PHOTOS / "train" / cls).iterdir())[:30]:
            shutil.copyfile(photo, folder / cls / photo.name)
    return folder


@pytest.mark.slow
def test_a_small_held_out_split_is_flagged_and_named_for_what_it_did(few_photos, weights_env, tmp_path, capsys):
    run, hub = tmp_path / "run", tmp_path / "hub"
    assert cli("train", "resnet20", "--dataset", "imagefolder", "--data-dir", few_photos, "--epochs", "2",
               "--output", run) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows, record = read_metrics(run / "metrics.csv"), json.loads((run / "run.json").read_text())
    held_out = record["val_images"]
    assert held_out == 6 and all(row["val_count"] == held_out for row in rows)  # 10 % of 30 + 30, stratified
    first_warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert f" {held_out} images" in first_warning  # flagged when the run starts, before the first epoch
    assert out.index(first_warning) < out.index("epoch 1/2")
    assert first_warning[len("warning: ") :] in record["warnings"]
    epoch_lines_match(out, rows)  # one process: the console says what metrics.csv says
    assert "top-5" not in out  # two classes: top-5 is always 100 %
    kept = rows[record["best_epoch"] - 1]  # 3 ants and 3 bees held out: chance is 50 %
    assert any("chance" in w for w in record["warnings"]) == bool(chance_warning(kept["val_acc1"], held_out, 50.0, ""))
    assert "validation" in record["selection"] and "test" not in record["selection"]

    # zoo eval on the same folder measures the held-out images again: named as the images that chose the epoch.
    assert cli("eval", "resnet20", "--checkpoint", run, "--dataset", "imagefolder", "--data-dir", few_photos,
               "--json", tmp_path / "eval.json", "--output", tmp_path / "ev") == 0  # fmt: skip
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["count"] == held_out and result["eval_set"].startswith("validation")
    assert result["acc1_ci95"] == pytest.approx(list(wilson_interval(round(result["acc1"] * held_out / 100), held_out)))
    assert any("chose the kept epoch" in w for w in result["warnings"])

    # Published: the card and its model-index say validation, with the images and the interval; the installed
    # manifest is not touched without --manifest.
    manifest_before = (weights_env.dir / "manifest.json").read_bytes()
    assert cli("publish", run, "--name", "resnet20.photos", "--out", hub) == 0
    assert (weights_env.dir / "manifest.json").read_bytes() == manifest_before
    card = (hub / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    (top1,) = front["model-index"][0]["results"]  # two classes: no top-5
    assert top1["dataset"]["split"] == "validation"
    assert score_text(result["acc1"], held_out) in card and "validation (selected the kept epoch)" in card


@pytest.mark.slow
def test_eval_on_new_photos_reports_images_interval_and_chance(few_photos, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "resnet20", "--dataset", "imagefolder", "--data-dir", few_photos, "--epochs", "1",
               "--val-split", "0", "--output", run) == 0  # fmt: skip
    assert "warning: the validation split" not in capsys.readouterr().out  # nothing held out: the last epoch kept
    assert cli("eval", "resnet20", "--checkpoint", run, "--dataset", "imagefolder", "--data-dir", PHOTOS / "val",
               "--json", tmp_path / "eval.json", "--output", tmp_path / "ev") == 0  # fmt: skip
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    images = sum(1 for cls in ("ants", "bees") for _ in (PHOTOS / "val" / cls).iterdir())
    assert result["count"] == images and result["chance"] == pytest.approx(100 * 83 / 153)  # bees: 83 of 153
    hits = round(result["acc1"] * images / 100)
    assert f"({hits}/{images}" in out
    expected = chance_warning(result["acc1"], images, result["chance"], "the evaluation's")
    assert result["warnings"] == expected and all(f"warning: {w}" in out for w in expected)


@pytest.mark.slow
def test_mnist_console_equals_metrics_csv(shared_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "mnist_cnn", "--dataset", "mnist", "--data-dir", shared_data, "--epochs", "2",
               "--train-subset", "2000", "--val-subset", "1000", "--output", run) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows = read_metrics(run / "metrics.csv")
    epoch_lines_match(out, rows)
    assert all(row["test_count"] == 1000 and row["train_count"] == 2000 for row in rows)
    assert "top-5" in out  # ten classes
