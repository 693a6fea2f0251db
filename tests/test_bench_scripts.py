"""The benchmark scripts' own arithmetic, on run folders written by a real (tiny) training run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from test_selection import Stripes, _recipe
from test_train import Tiny

from zoo.training import fit
from zoo.training.loggers import read_metrics

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_to_accuracy_of_a_finished_run(tmp_path):
    """train_cifar --from-run: the first epoch whose test top-1 reaches each target, the training time summed
    up to it, and "not reached" for a target above every epoch."""
    torch.manual_seed(0)
    fit(Tiny(), Stripes(64, seed=0), None, _recipe(3), tmp_path / "run", progress=False, test_set=Stripes(32, seed=1))
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    best = max(r["test_acc1"] for r in rows)
    first_best = next(r["epoch"] for r in rows if r["test_acc1"] == best)
    out = _load("train_cifar").summarise_run(tmp_path / "run", [0.0, best, best + 0.01])
    assert [o["epoch_at_target"] for o in out] == [1, first_best, None]
    assert out[0]["train_s_to_target"] == round(rows[0]["epoch_time"], 1)
    assert out[1]["train_s_to_target"] == round(sum(r["epoch_time"] for r in rows[:first_best]), 1)
    assert out[1]["wall_s_to_target"] >= out[1]["train_s_to_target"] - 0.1
    assert out[2]["train_s_to_target"] is None and out[2]["final_test_pct"] == rows[-1]["test_acc1"]
