"""``zoo bench`` and ``zoo.benchmark``: what it counts is right, what it prints parses, bad options are refused."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import torch.nn as nn

import zoo
from zoo.benchmark import benchmark_model, count_macs
from zoo.cli import main as cli


def _macs_by_hand(model: nn.Module, x: torch.Tensor) -> int:
    """Conv and Linear multiply-adds from the layers' shapes, counted with forward hooks."""
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name, size", [("mnist_cnn", (1, 28, 28)), ("resnet20", (3, 32, 32)), ("vgg11", (3, 64, 64))])
def test_macs_match_the_layer_shapes(name, size):
    model = zoo.create_model(name)
    x = torch.zeros(2, *size)
    assert count_macs(model, x) == _macs_by_hand(model, x)


def test_resnet50_macs_match_torchvisions_published_number():
    from torchvision.models import ResNet50_Weights

    published = ResNet50_Weights.IMAGENET1K_V2.meta["_ops"]  # GMACs at 224x224, from torchvision's docs table
    macs = count_macs(zoo.create_model("resnet50"), torch.zeros(1, 3, 224, 224)) / 1e9
    assert macs == pytest.approx(published, abs=0.001)


def test_benchmark_reports_positive_medians_for_both_modes():
    r = benchmark_model("mnist_cnn", batch_size=4, warmup=1, steps=2)
    assert r.params == sum(p.numel() for p in zoo.create_model("mnist_cnn").parameters())
    assert r.infer_samples_per_s > 0 and r.train_samples_per_s > 0
    assert r.infer_samples_per_s == pytest.approx(4 / (r.infer_step_ms / 1e3))
    assert r.input_size == (1, 28, 28) and r.peak_memory_mb > 0


def test_a_featureless_head_still_trains():
    r = benchmark_model("resnet20", batch_size=2, warmup=0, steps=1, inference=False, model_kwargs={"num_classes": 0})
    assert r.infer_samples_per_s is None and r.train_samples_per_s > 0


def test_cli_csv_and_json(capsys, tmp_path):
    common = ["--batch-size", "2", "--warmup", "0", "--steps", "1", "--mode", "inference"]
    assert cli(["bench", "mnist_cnn*", *common, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["model"] for r in rows] == ["mnist_cnn", "mnist_cnn_deep"]
    assert all(float(r["infer_samples_per_s"]) > 0 and r["train_samples_per_s"] == "" for r in rows)
    out = tmp_path / "b.json"
    assert cli(["bench", "resnet20", *common, "--img-size", "16", "--format", "json", "--output", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["input_size"] == "3x16x16" and row["gmacs"] < count_macs(zoo.create_model("resnet20"),
                                                                         torch.zeros(1, 3, 32, 32)) / 1e9  # fmt: skip


@pytest.mark.slow
def test_onnxruntime_rows_beside_eager(capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    argv = ["bench", "resnet20", "--runtime", "eager", "onnxruntime", "--batch-size", "2", "--warmup", "1",
            "--steps", "2", "--threads", "1", "--format", "csv"]  # fmt: skip
    assert cli(argv) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["runtime"] for r in rows] == ["eager", "onnxruntime"]
    eager, onnx = rows
    assert float(onnx["infer_samples_per_s"]) > 0 and onnx["train_samples_per_s"] == ""
    assert float(eager["train_samples_per_s"]) > 0  # eager still times training with --mode both
    assert onnx["params"] == eager["params"] and onnx["channels_last"] == "False"


@pytest.mark.slow
def test_the_timed_onnx_session_computes_the_models_outputs():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from zoo.export import onnx_runner

    torch.manual_seed(0)
    model = zoo.create_model("resnet20").eval()
    x = torch.randn(3, 3, 32, 32)
    (out,) = onnx_runner(model, x, threads=1)()
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "mnist_cnn", "--dtype", "fp16", "--device", "cpu"], "fp16"),
        (["bench", "nosuch*"], "'nosuch*'"),
        (["bench", "nosuchmodel"], "'nosuchmodel'"),
        (["bench", "mnist_cnn", "--steps", "0"], "steps=0"),
        (["bench", "mnist_cnn", "--input-size", "1", "0", "28"], "--input-size"),
        (["bench", "mnist_cnn", "--runtime", "onnxruntime", "--mode", "train"], "onnxruntime"),
        (["bench", "mnist_cnn", "--runtime", "onnxruntime", "--dtype", "bf16"], "onnxruntime"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
