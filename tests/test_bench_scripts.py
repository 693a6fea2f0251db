"""The benchmark scripts' own arithmetic, on run folders written by a real (tiny) training run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_timm_train_script_builds_zoos_model_through_timms_registry(tmp_path):
    """train_timm runs timm's train.py in a process where zoo's model is a timm model: timm.create_model,
    called as timm's script calls it (its generic options included), must return zoo's network."""
    import subprocess
    import sys

    script = tmp_path / "fake_train.py"
    script.write_text(
        "import sys, timm\n"
        "m = timm.create_model(sys.argv[1], pretrained=False, num_classes=7, drop_rate=0.0, drop_path_rate=None,"
        " global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False, checkpoint_path='')\n"
        "print(type(m).__module__, type(m).__name__, m.num_classes, sum(p.numel() for p in m.parameters()))\n"
    )
    child = [sys.executable, str(BENCHMARKS / "train_timm.py"), "--timm-child", str(script), "resnet20", "zoo_resnet20"]
    proc = subprocess.run(child, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import zoo

    reference = zoo.create_model("resnet20", num_classes=7)
    params = sum(p.numel() for p in reference.parameters())
    assert proc.stdout.splitlines()[-1] == f"{type(reference).__module__} {type(reference).__name__} 7 {params}"


def test_timm_log_lines_give_each_epochs_rate():
    """The end-of-epoch line of timm's train.py (its format at pytorch-image-models aa4b5850) carries the
    epoch's mean rate in brackets; lines inside an epoch are not taken for its end."""
    pattern = _load("train_timm")._TIMM_LINE
    line = ("Train: 1 [  38/39 (100%)]  Loss: 2.10 (2.20)  Time: 0.210s,  609.52/s  (0.225s,  568.89/s)  "
            "LR: 1.000e-01  Data: 0.001 (0.002)")  # fmt: skip
    m = pattern.search(line)
    assert m and (m.group(1), m.group(2), m.group(3), m.group(4)) == ("1", "38", "39", "568.89")
    mid = line.replace("[  38/39 (100%)]", "[  10/39 ( 28%)]")
    m = pattern.search(mid)
    assert m and int(m.group(2)) + 1 != int(m.group(3))


def test_results_page_shows_the_gpu_run_as_its_own_labelled_section(tmp_path, monkeypatch):
    """docs' results tables: CPU files first, then every *-cuda* file under one heading naming the GPU,
    driver, CUDA and torch; each table lists its rows with "—" for a missing value."""
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "docs"))
    import paper_tables

    cpu = {"date": "2026-11-30", "cpu": "AMD EPYC", "cores": 2, "torch": "2.14.1", "torchvision": "0.29.1"}
    gpu = {**cpu, "cpu": "Xeon", "cores": 16, "gpu": "NVIDIA H200", "cuda": "13.0", "driver": "580.159.04",
           "torch": "2.11.0"}  # fmt: skip
    files = {"inference": (cpu, [{"model": "resnet18", "ratio": 1.001}]),
             "inference-cuda-fp16": (gpu, [{"model": "resnet50", "ratio": 0.973}]),
             "train_mnist": (cpu, [{"recipe": "fast", "time_s": None}])}  # fmt: skip
    for name, (machine, rows) in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"machine": machine, "rows": rows}))
    page = paper_tables.benchmark_results(tmp_path)
    heading = "### On a GPU: NVIDIA H200, driver 580.159.04, CUDA 13.0, torch 2.11.0"
    assert page.index("### On the CPU") < page.index("#### inference\n") < page.index("#### train_mnist")
    assert page.index("#### train_mnist") < page.index(heading) < page.index("#### inference-cuda-fp16")
    assert "| resnet50 | 0.973 |" in page and "| fast | — |" in page
    cpu_part = page[: page.index(heading)]
    assert "H200" not in cpu_part
    assert "`benchmarks/inference.py`, 2026-11-30: AMD EPYC, 2 cores; torch 2.14.1" in cpu_part


def test_a_lab_run_keeps_the_epoch_its_run_kept(tmp_path):
    """lab_runs: a run with held-out images reports the epoch the run kept and its held-out top-1, the
    per-epoch curve on those images, and the command as the lab page prints it."""
    torch.manual_seed(0)
    fit(Tiny(), Stripes(64, seed=0), Stripes(32, seed=1), _recipe(3), tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    shown = ["resnet20", "--dataset", "imagefolder:photos"]
    row = _load("lab_runs").summarise("lab10-4", "scratch", shown, rows, run, 1.0)
    assert row["measured_on"] == "val" and row["kept_epoch"] == run["best_epoch"]
    assert row["kept_top1"] == round(rows[run["best_epoch"] - 1]["val_acc1"], 2)
    assert row["top1_per_epoch"] == ", ".join(f"{r['val_acc1']:.2f}" for r in rows)
    assert row["command"] == "zoo train resnet20 --dataset imagefolder:photos" and row["epochs"] == 3
