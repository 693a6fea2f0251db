"""DistributedDataParallel on CPU: two gloo processes under torchrun, on tiny Fashion-MNIST-format data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from synth_data import ROOT, make_idx_dataset

from zoo.training.loggers import read_metrics

SCRIPT = """
import sys
import torch
import torch.distributed as dist
import zoo
from zoo.data import create_datasets
from zoo.training.recipes import get_recipe
from zoo.training import fit
from zoo.training.checkpoint import seed_everything

dist.init_process_group("gloo")
rank = dist.get_rank()
train, val, info = create_datasets("fashion_mnist", sys.argv[1])
seed_everything(100 + rank)  # a different initialisation on each rank: DDP must make them agree
model = zoo.create_model("resnet20", num_classes=info.num_classes, in_chans=info.in_chans)
recipe = get_recipe("fast", "fashion_mnist").replace(epochs=2, batch_size=32)
result = fit(model, train, val, recipe, sys.argv[2], progress=False)
torch.save({"model": model.state_dict(), "history": result.history}, f"{sys.argv[3]}/rank{rank}.pt")
dist.destroy_process_group()
"""


def _torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    make_idx_dataset(root / "FashionMNIST" / "raw", n_train=96, n_test=32)
    return root


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_parameters(fashion_dir, tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    res = _torchrun(str(script), str(fashion_dir), str(tmp_path / "run"), str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["model"].keys() == r1["model"].keys()
    for name, value in r0["model"].items():
        assert torch.equal(value, r1["model"][name]), name
    # Validation is all-reduced: both ranks report the metrics of the whole set.
    assert [h["val_acc1"] for h in r0["history"]] == [h["val_acc1"] for h in r1["history"]]
    # Each rank trained on half of every epoch: 96 images / 2 ranks / 16 per rank = 3 steps.
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["global_step"] == 2 * 3
    # Only rank 0 logged.
    assert res.stdout.count("training resnet20") == 1 and len(read_metrics(tmp_path / "run" / "metrics.csv")) == 2


@pytest.mark.slow
def test_torchrun_zoo_train_module(fashion_dir, tmp_path):
    out = tmp_path / "run"
    res = _torchrun("-m", "zoo", "train", "mnist_cnn", "--dataset", "fashion_mnist", "--data-dir", str(fashion_dir),
                    "--epochs", "1", "--batch-size", "32", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cpu x2" in res.stdout and res.stdout.count("epoch 1/1") == 1
    assert len(read_metrics(out / "metrics.csv")) == 1 and (out / "best.safetensors").is_file()
