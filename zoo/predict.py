"""Prediction: classify image files of any size or mode with a model's weights and the preprocessing that came with
them (``zoo.create_transform(model.pretrained_cfg)``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.data.transforms import ImageTooLarge, check_image_size, create_transform, to_8_bit
from zoo.errors import ArgumentValueError, DataError
from zoo.factory import create_model
from zoo.pretrained.manifest import get_entry
from zoo.runs import label_names, load_model, printable, refuse_tag_with_checkpoint
from zoo.utils import checks
from zoo.utils.scores import score_text

SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"
# The weights that classify each bundled sample set when `zoo predict` runs without arguments.
SAMPLE_MODELS = {"mnist": "mnist_cnn.mnist", "fashion_mnist": "resnet20.fashion_mnist", "cifar10": "resnet20.cifar10"}


@dataclass
class Prediction:
    """The top-k classes of one image, most likely first."""

    labels: list[str]
    probs: list[float]


_IMAGE_KINDS = "give PNG, JPEG, BMP, GIF, TIFF or WebP files"


def load_image(path: str | os.PathLike[str]) -> Any:
    """An image file, read fully and scaled to 8 bits (not clipped); a missing file, not an image, or one beyond
    Pillow's decompression-bomb limit or zoo's side limit (refused before it is decoded) is an error naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file", hint=_IMAGE_KINDS)
    try:
        with Image.open(path) as img:
            check_image_size(img, where=path)
            img.load()
            return to_8_bit(img.copy())
    except ImageTooLarge:  # names the file already
        raise
    except Image.DecompressionBombError as e:  # Pillow's message: "Image size (N pixels) exceeds limit of M pixels"
        raise DataError(
            f"{path}: {str(e).rstrip('.')}",
            hint="give a smaller image; raise PIL.Image.MAX_IMAGE_PIXELS in Python if you trust this one",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})", hint=_IMAGE_KINDS) from None


@torch.inference_mode()
def predict(model: nn.Module, images: Sequence[Any], topk: int = 5) -> list[Prediction]:
    """Top-``topk`` labels and probabilities of each PIL image, preprocessed as the weights expect."""
    checks.int_in("topk", topk, 1)
    transform = create_transform(model.pretrained_cfg)
    batch = torch.stack([transform(check_image_size(img, transform, f"image {i}")) for i, img in enumerate(images, 1)])
    names = label_names(model)
    model.eval()
    probs = model(batch).softmax(dim=1)
    top = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        Prediction([names[i] for i in idx.tolist()], val.tolist())
        for val, idx in zip(top.values, top.indices, strict=True)
    ]


def create_for_prediction(model_name: str | None, checkpoint: str | os.PathLike[str] | None) -> nn.Module:
    """The weights ``model_name`` (``arch.tag``), or those of a local ``checkpoint`` (:func:`zoo.runs.load_model`;
    ``model_name`` is then its architecture, or None for the recorded one)."""
    if checkpoint:
        refuse_tag_with_checkpoint(model_name, checkpoint, "predict", f"drop --checkpoint to use {model_name}")
        return load_model(checkpoint, model_name)
    if model_name is None:
        raise ArgumentValueError("name the weights to use, e.g. `zoo predict mnist_cnn.mnist IMAGE`")
    return create_model(model_name, pretrained=True)


def below_promise(hits: int, n: int, top1: float | None, alpha: float = 0.01) -> bool:
    """Whether ``hits`` right out of ``n`` is below what a test-set top-1 of ``top1`` % makes plausible: the binomial
    tail of this few or fewer is under ``alpha``."""
    if top1 is None or n == 0:
        return False
    p = min(max(top1 / 100.0, 0.0), 1.0)
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(hits + 1)) < alpha  # the binomial tail


def run_samples() -> int:
    """Classify the bundled sample images, each marked right or wrong; 1 when some weights score below what their
    manifest top-1 promises (:func:`below_promise`), else 0."""
    records = json.loads((SAMPLES_DIR / "samples.json").read_text())
    total = correct = 0
    broken: list[str] = []
    for dataset, model_name in SAMPLE_MODELS.items():
        samples = [r for r in records if r["dataset"] == dataset]
        model = create_for_prediction(model_name, None)
        predictions = predict(model, [load_image(SAMPLES_DIR / r["file"]) for r in samples], topk=1)
        hits = 0
        print(f"{model_name} on {len(samples)} {dataset} test images bundled with zoo:")
        for record, pred in zip(samples, predictions, strict=True):
            ok = pred.labels[0] == record["label"]
            hits += ok
            print(
                f"  {record['file']:<40} true {record['label']:<12} predicted {printable(pred.labels[0]):<12} "
                f"{pred.probs[0]:6.1%}  {'right' if ok else 'WRONG'}"
            )
        metrics = get_entry(*model_name.split(".", 1)).metrics or {}
        top1, images = metrics.get("top1"), metrics.get("images")
        promise = score_text(top1, images) if top1 is not None and images else f"{top1:.2f} %"
        full = f"; on the whole {dataset} test set: {promise}" if top1 is not None else ""
        print(f"  {hits}/{len(samples)} right{full}")
        if below_promise(hits, len(samples), top1):
            broken.append(f"{model_name}: {hits}/{len(samples)} right is below its promised {top1:.2f} % top-1")
        total, correct = total + len(samples), correct + hits
    print(f"{correct}/{total} predictions right")
    for line in broken:
        print(f"FAIL {line} (a model at that accuracy gets this few right less than 1 % of the time)")
    return 1 if broken else 0
