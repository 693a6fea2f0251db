"""``zoo predict``: classify image files with a model's weights and the preprocessing that came with them.

zoo predict mnist_cnn.mnist digit.png another.png     # top-5 labels with probabilities
zoo predict                                           # the sample images bundled with zoo
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def _print_predictions(model_name: str, paths: Sequence[str], predictions: list) -> None:
    print(f"{model_name}:")
    for path, pred in zip(paths, predictions, strict=True):
        ranked = ", ".join(f"{label} {p:.1%}" for label, p in zip(pred.labels, pred.probs, strict=True))
        print(f"  {path}: {ranked}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo predict``."""
    parser.add_argument("model", nargs="?", help="weights to use, arch.tag (e.g. mnist_cnn.mnist)")
    parser.add_argument("images", nargs="*", help="image files (any size or mode)")
    parser.add_argument("--topk", type=int, default=5, help="how many classes to show per image (default 5)")
    parser.add_argument("--checkpoint", help="use this local safetensors file instead of the model's weights")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo predict``."""
    from zoo.predict import create_for_prediction, load_image, predict, run_samples
    from zoo.registry import is_model

    if args.model is None:
        return run_samples()
    if not is_model(args.model):
        hint = " (it is a file: give the model first, e.g. `zoo predict mnist_cnn.mnist FILE`)"
        raise ValueError(
            f"{args.model!r} is not a model name{hint if Path(args.model).exists() else ''}; "
            "`zoo list --pretrained` lists the weights"
        )
    if not args.images:
        raise ValueError("no image files given: `zoo predict MODEL IMAGE [IMAGE ...]`")
    images = [load_image(path) for path in args.images]  # a bad file fails before any weights load
    model = create_for_prediction(args.model, args.checkpoint)
    _print_predictions(args.model, args.images, predict(model, images, topk=args.topk))
    return 0
