"""A run with neither a validation nor a test set has no top-1 of its own: ``zoo publish`` measures one instead."""

from __future__ import annotations

import json

import pytest
import torch
from synth_data import make_idx_dataset

import zoo
from zoo.data import create_datasets
from zoo.evaluation import evaluate
from zoo.publish import publish
from zoo.training import fit
from zoo.training.recipes import get_recipe


@pytest.mark.slow
def test_publish_measures_the_top1_a_run_without_validation_lacks(weights_env, tmp_path):
    data = make_idx_dataset(tmp_path / "data", n_train=64, n_test=40)
    train, _, info = create_datasets("mnist", str(data), splits=("train",))
    torch.manual_seed(0)
    model = zoo.create_model("mnist_cnn")
    recipe = get_recipe("seed-mnist").replace(epochs=1, batch_size=32)
    run_info = {"dataset": "mnist", "dataset_kind": "mnist", "data_dir": str(data), "seed": recipe.seed}
    result = fit(model, train, None, recipe, tmp_path / "run", model_args={"num_classes": 10, "in_chans": 1},
                 run_info=run_info, label_names=info.classes, progress=False)  # fmt: skip
    assert result.best_metric_name == "last_epoch" and result.best_epoch == 1
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["best_metric_name"] == "last_epoch" and run["best_epoch"] == 1

    out = tmp_path / "published"
    published = publish(tmp_path / "run", "mnist_cnn.noval", out, update_manifest=True)
    check = next(c for c in published.checks if c.name == "fresh evaluation")
    assert check.passed is None and "no top-1 to compare" in check.detail
    # The top-1 recorded is the one measured on the exported file, not the run's training loss.
    _, test_set, _ = create_datasets("mnist", str(data), splits=("val",))
    fresh = evaluate(zoo.create_model("mnist_cnn", checkpoint_path=out / "model.safetensors"), test_set)
    assert published.metrics["top1"] == pytest.approx(round(fresh["acc1"], 2))
    assert weights_env.manifest()["weights"]["mnist_cnn.noval"]["metrics"]["top1"] == published.metrics["top1"]
