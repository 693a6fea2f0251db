"""DistributedDataParallel on CPU: two gloo processes under torchrun, on tiny Fashion-MNIST-format data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import epoch_lines_match
from synth_data import ROOT, make_idx_dataset

from zoo.training.loggers import read_metrics

SCRIPT = """
import json
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

import zoo
from zoo.data import create_datasets
from zoo.training import fit
from zoo.training.checkpoint import seed_everything
from zoo.training.distributed import distributed_session, rank_zero_first
from zoo.training.recipes import get_recipe

data, out = sys.argv[1], Path(sys.argv[2])


class Jittered(Dataset):
    # 8x8 images whose brightness jitter comes from the global RNG, as a torchvision transform's does.
    classes = ["dark", "bright"]

    def __init__(self, interrupt_at=None):
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(32) % 2
        self.images = torch.rand(32, 3, 8, 8, generator=g) * 0.5 + self.labels.view(-1, 1, 1, 1) * 0.5
        self.interrupt_at, self.reads, self.draws = interrupt_at, 0, []

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.interrupt_at:
            signal.raise_signal(signal.SIGINT)  # a Ctrl-C at a known point: the run saves after this batch
        jitter = torch.rand(()).item()
        self.draws.append(jitter)
        return self.images[i] + jitter, int(self.labels[i])


def jittered_run(folder, interrupt_at=None, resume=False):
    seed_everything(42)  # as zoo train does, the same on every rank
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    data = Jittered(interrupt_at)
    recipe = get_recipe("fast", "cifar10").replace(epochs=2, batch_size=8, workers=0, rand_augment="", crop_pad=0,
                                                   hflip=0.0, ema=False)
    result = fit(model, data, None, recipe, folder, resume=folder if resume else None, progress=False)
    return data.draws, result


with distributed_session("cpu") as (rank, world, _):
    with rank_zero_first():  # rank 0 "downloads" slowly; rank 1 must find the file when it reads
        if rank == 0:
            time.sleep(1.0)
            (out / "downloaded.txt").write_text("data")
        (out / f"saw{rank}.txt").write_text(str((out / "downloaded.txt").exists()))
    train, val, info = create_datasets("fashion_mnist", data)
    seed_everything(100 + rank)  # a different initialisation on each rank: DDP must make them agree
    model = zoo.create_model("resnet20", num_classes=info.num_classes, in_chans=info.in_chans)
    recipe = get_recipe("fast", "fashion_mnist").replace(epochs=2, batch_size=32)
    result = fit(model, train, val, recipe, out / "fashion", progress=False)
    torch.save({"model": model.state_dict(), "history": result.history}, out / f"rank{rank}.pt")

    # 16 images per rank, 4 per step: 4 steps per epoch. The split run stops after 2 steps of epoch 1.
    full_draws, full = jittered_run(out / "full")
    first_draws, stopped = jittered_run(out / "split", interrupt_at=6)
    rest_draws, resumed = jittered_run(out / "split", resume=True)
    record = {"full": full_draws, "first": first_draws, "rest": rest_draws, "stopped": stopped.status,
              "full_history": full.history, "resumed_history": resumed.history}
    (out / f"jitter{rank}.json").write_text(json.dumps(record))
"""


def _torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # --standalone: the rendezvous binds a free port itself and tells the workers, so no port is picked,
    # closed and hoped to be free by the time it is bound again.
    # PYTHONPATH: the script imports the zoo of this checkout, whatever copy is installed.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    make_idx_dataset(root / "FashionMNIST" / "raw", n_train=96, n_test=32)
    return root


@pytest.fixture(scope="module")
def ddp_runs(fashion_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    script = out / "ddp_fit.py"
    script.write_text(SCRIPT)
    res = _torchrun(str(script), str(fashion_dir), str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


@pytest.mark.slow
def test_the_other_ranks_read_only_after_rank_zero_has_downloaded(ddp_runs):
    out, _ = ddp_runs
    assert [(out / f"saw{r}.txt").read_text() for r in (0, 1)] == ["True", "True"]


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_parameters(ddp_runs):
    out, res = ddp_runs
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["model"].keys() == r1["model"].keys()
    for name, value in r0["model"].items():
        assert torch.equal(value, r1["model"][name]), name
    # Validation is all-reduced: both ranks report the metrics of the whole set.
    assert [h["val_acc1"] for h in r0["history"]] == [h["val_acc1"] for h in r1["history"]]
    # Each rank trained on half of every epoch: 96 images / 2 ranks / 16 per rank = 3 steps.
    ckpt = torch.load(out / "fashion" / "last.pt", weights_only=True)
    assert ckpt["global_step"] == 2 * 3
    # Only rank 0 logged.
    assert res.stdout.count("training resnet20") == 1 and len(read_metrics(out / "fashion" / "metrics.csv")) == 2


@pytest.mark.slow
def test_each_rank_augments_its_own_way_and_resumes_its_own_stream(ddp_runs):
    out, _ = ddp_runs
    r0, r1 = (json.loads((out / f"jitter{r}.json").read_text()) for r in (0, 1))
    assert len(r0["full"]) == len(r1["full"]) == 1 + 2 * 16  # fit() reads one image to check it, then 2 epochs
    # Both ranks started from the same seed; their augmentation draws still differ.
    assert not set(r0["full"]) & set(r1["full"])
    # Stopped after 2 of 4 steps (1 + 8 draws), then resumed: each rank continues exactly its own stream.
    assert r0["stopped"] == r1["stopped"] == "interrupted"
    for r in (r0, r1):
        assert len(r["first"]) == 9 and r["first"] + r["rest"] == r["full"]
        assert _without_times(r["resumed_history"]) == _without_times(r["full_history"])
    ckpt = torch.load(out / "split" / "last.pt", weights_only=True)
    assert len(ckpt["ranks"]) == 2


def _without_times(rows: list[dict]) -> list[dict]:
    """History rows without their wall-clock fields, which no two runs share."""
    return [{k: v for k, v in row.items() if k not in ("epoch_time", "img_per_s", "time")} for row in rows]


@pytest.mark.slow
def test_torchrun_zoo_train_module(fashion_dir, tmp_path):
    out = tmp_path / "run"
    res = _torchrun("-m", "zoo", "train", "mnist_cnn", "--dataset", "fashion_mnist", "--data-dir", str(fashion_dir),
                    "--epochs", "1", "--batch-size", "32", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cpu x2" in res.stdout and res.stdout.count("epoch 1/1") == 1
    assert len(read_metrics(out / "metrics.csv")) == 1 and (out / "best.safetensors").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["world_size"] == 2
    epoch_lines_match(res.stdout, read_metrics(out / "metrics.csv"))  # img/s counted once for both processes
