"""zoo export: ONNX (run in ONNX Runtime) and torch.export programs that agree with eager on real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import zoo
from zoo.cli import main as cli
from zoo.export import ExportError, export_model, sample_inputs
from zoo.predict import SAMPLES_DIR


def _labels(dataset: str) -> list[tuple[str, str]]:
    records = json.loads((SAMPLES_DIR / "samples.json").read_text())
    return [(r["file"], r["label"]) for r in records if r["dataset"] == dataset]


@pytest.mark.slow
def test_onnx_export_of_the_bundled_cifar_weights_runs_in_onnx_runtime(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "r20.onnx"
    assert cli(["export", "resnet20.cifar10", "--format", "onnx", "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out  # what it wrote
    meta = json.loads((tmp_path / "r20.onnx.json").read_text())
    model = zoo.create_model("resnet20.cifar10", pretrained=True).eval()
    assert meta["preprocessing"]["mean"] == list(model.pretrained_cfg["mean"])
    assert meta["label_names"] == list(model.pretrained_cfg["label_names"]) and meta["input"]["shape"][0] == "batch"
    # Independently of zoo's check: ONNX Runtime on the CIFAR-10 samples, a batch size the export never saw.
    transform = zoo.create_transform(model.pretrained_cfg)
    from PIL import Image

    files = _labels("cifar10")
    x = torch.stack([transform(Image.open(SAMPLES_DIR / f).convert("RGB")) for f, _ in files])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        eager = model(x)
    assert got.shape == (len(files), 10) and torch.allclose(got, eager, atol=1e-4, rtol=1e-3)
    assert (got.argmax(1) == eager.argmax(1)).all()


def test_pt2_export_with_a_fixed_batch_reloads_with_torch_export(tmp_path):
    out = tmp_path / "mnist.pt2"
    model = zoo.create_model("mnist_cnn.mnist", pretrained=True)
    result = export_model(model, out, "pt2", name="mnist_cnn.mnist", batch=4)
    assert result.images == 4 and result.max_abs_diff <= 1e-4
    program = torch.export.load(out).module()
    x = sample_inputs(model)[:4]
    with torch.no_grad():
        assert torch.allclose(program(x), model.eval()(x), atol=1e-5)
    assert json.loads(out.with_name("mnist.pt2.json").read_text())["input"]["shape"] == [4, 1, 28, 28]


class _Noisy(nn.Module):
    """Adds fresh noise on each call: no export can agree with it."""

    num_classes = 10
    pretrained_cfg = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) + torch.rand(x.shape[0], 10)


def test_an_export_that_disagrees_with_eager_is_not_kept(tmp_path):
    out = tmp_path / "noisy.pt2"
    with pytest.raises(ExportError) as e:
        export_model(_Noisy(), out, "pt2", name="noisy")
    assert "noisy" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_export_requests_are_clear(tmp_path, capsys):
    assert cli(["export", "resnet20", "--output", str(tmp_path / "x.onnx")]) == 2
    assert "'resnet20'" in capsys.readouterr().err
    assert cli(["export", str(tmp_path / "missing"), "--format", "pt2"]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert not Path(tmp_path / "x.onnx").exists()


def _bottleneck_cifar() -> nn.Module:
    from zoo.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], stem="cifar", groups=4, width_per_group=8,
                  replace_stride_with_dilation=[False, False, True])  # fmt: skip


# One of each structure the registry builds: both MNIST CNNs, the CIFAR ResNets (option-A shortcuts),
# basic-block and grouped/dilated bottleneck ResNets, and VGG with local response norm. ImageNet stems
# take img_size 64 so that the sample images (resized by the model's own transform) stay quick.
STRUCTURES = {
    "mnist_cnn": lambda: zoo.create_model("mnist_cnn"),
    "mnist_cnn_deep": lambda: zoo.create_model("mnist_cnn_deep"),
    "resnet20": lambda: zoo.create_model("resnet20"),
    "resnet18": lambda: zoo.create_model("resnet18", img_size=64),
    "resnext_dilated": _bottleneck_cifar,
    "vgg11_lrn_cifar": lambda: zoo.create_model("vgg11_lrn", stem="cifar"),
}


@pytest.mark.slow
@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_every_structure_exports_to_onnx_and_agrees_with_eager(structure, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = STRUCTURES[structure]()
    result = export_model(model, tmp_path / "m.onnx", "onnx", name=structure)
    assert result.images == len(list(SAMPLES_DIR.glob("*.png"))) and result.max_abs_diff <= 1e-3
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["input"]["shape"][1:] == list(model.pretrained_cfg["input_size"])
