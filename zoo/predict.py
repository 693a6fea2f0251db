"""Prediction: classify image files with a model's weights and the preprocessing that came with them.

    zoo predict mnist_cnn.mnist digit.png another.png     # top-5 labels with probabilities
    zoo predict                                           # the sample images bundled with zoo

Images of any size or mode are converted and resized by the weights' own transform
(``zoo.create_transform(model.pretrained_cfg)``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"
# The weights that classify each bundled sample set when `zoo predict` runs without arguments.
SAMPLE_MODELS = {"mnist": "mnist_cnn.mnist", "fashion_mnist": "resnet20.fashion_mnist"}


@dataclass
class Prediction:
    """The top-k classes of one image, most likely first."""

    labels: list[str]
    probs: list[float]


def load_image(path: str | os.PathLike[str]) -> Any:
    """Open an image file fully, with an error that names the file when it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file (give image files such as PNG or JPEG)")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e}); give PNG, JPEG, BMP, GIF, TIFF or WebP files") from None


def _label_names(model: nn.Module) -> list[str]:
    names = model.pretrained_cfg.get("label_names")
    return list(names) if names else [str(i) for i in range(model.num_classes)]


@torch.inference_mode()
def predict(model: nn.Module, images: Sequence[Any], topk: int = 5) -> list[Prediction]:
    """Top-``topk`` labels and probabilities of each PIL image, preprocessed as the weights expect."""
    from zoo.data.transforms import create_transform

    if topk < 1:
        raise ValueError(f"topk={topk} is invalid: use 1 or more")
    transform = create_transform(model.pretrained_cfg)
    batch = torch.stack([transform(img) for img in images])
    names = _label_names(model)
    model.eval()
    probs = model(batch).softmax(dim=1)
    top = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        Prediction([names[i] for i in idx.tolist()], val.tolist())
        for val, idx in zip(top.values, top.indices, strict=True)
    ]


def create_for_prediction(model_name: str, checkpoint: str | None) -> nn.Module:
    """The weights ``model_name`` (``arch.tag``) or a local checkpoint, ready to predict."""
    from zoo.factory import create_model

    if checkpoint:
        return create_model(model_name, checkpoint_path=checkpoint)
    return create_model(model_name, pretrained=True)


def run_samples() -> int:
    """Classify the bundled sample images, mark each prediction right or wrong, and count them.

    The samples are the first test image of each class, chosen without looking at any model, so a hard
    one can be misread; the full test-set accuracy of each set of weights is printed beside the count.
    """
    from zoo.hub.manifest import get_entry

    records = json.loads((SAMPLES_DIR / "samples.json").read_text())
    total = correct = 0
    for dataset, model_name in SAMPLE_MODELS.items():
        samples = [r for r in records if r["dataset"] == dataset]
        model = create_for_prediction(model_name, None)
        predictions = predict(model, [load_image(SAMPLES_DIR / r["file"]) for r in samples], topk=1)
        hits = 0
        print(f"{model_name} on {len(samples)} {dataset} test images bundled with zoo:")
        for record, pred in zip(samples, predictions, strict=True):
            ok = pred.labels[0] == record["label"]
            hits += ok
            print(f"  {record['file']:<40} true {record['label']:<12} predicted {pred.labels[0]:<12} "
                  f"{pred.probs[0]:6.1%}  {'right' if ok else 'WRONG'}")  # fmt: skip
        top1 = (get_entry(*model_name.split(".", 1)).metrics or {}).get("top1")
        full = f"; on the whole {dataset} test set: {top1:.2f} %" if top1 is not None else ""
        print(f"  {hits}/{len(samples)} right{full}")
        total, correct = total + len(samples), correct + hits
    print(f"{correct}/{total} predictions right")
    return 0
