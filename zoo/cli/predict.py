"""``zoo predict``: classify image files with a model's weights and the preprocessing that came with them.

zoo predict mnist_cnn.mnist digit.png another.png     # top-5 labels with probabilities
zoo predict                                           # the sample images bundled with zoo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.errors import ArgumentValueError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo predict``."""
    parser.add_argument(
        "model",
        nargs="?",
        help="weights to use, arch.tag (e.g. mnist_cnn.mnist); with --checkpoint "
        "the architecture (no tag), which may be left out when the file records it",
    )
    parser.add_argument("images", nargs="*", help="image files (any size or mode)")
    parser.add_argument("--topk", type=int, default=5, help="how many classes to show per image (default 5)")
    parser.add_argument(
        "--checkpoint",
        help="use this local safetensors file, `zoo train` run folder or published "
        "folder instead of the model's weights",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``zoo predict``."""
    from zoo.predict import create_for_prediction, load_image, predict, run_samples
    from zoo.registry import is_model
    from zoo.runs import printable  # names from a file: never a terminal escape or a forged line

    model_name, images = args.model, list(args.images)
    if model_name is None and not args.checkpoint:
        return run_samples()
    if args.checkpoint and model_name is not None and not is_model(model_name) and Path(model_name).exists():
        model_name, images = None, [model_name, *images]  # `zoo predict --checkpoint RUN photo.jpg`
    if model_name is not None and not is_model(model_name):
        hint = " (it is a file: give the model first, e.g. `zoo predict mnist_cnn.mnist FILE`)"
        raise ArgumentValueError(
            f"{model_name!r} is not a model name{hint if Path(model_name).exists() else ''}; "
            "`zoo list --pretrained` lists the weights"
        )
    if not images:
        raise ArgumentValueError(
            f"no image files given to {model_name or args.checkpoint}", hint="`zoo predict MODEL IMAGE [IMAGE ...]`"
        )
    loaded = [load_image(path) for path in images]  # a bad file fails before any weights load
    model = create_for_prediction(model_name, args.checkpoint)
    # With --checkpoint the heading names the file: the weights used are its, whatever architecture was named.
    arch = model_name or model.pretrained_cfg.get("architecture", "")
    shown = f"{arch} ({args.checkpoint})".strip() if args.checkpoint else model_name
    predictions = predict(model, loaded, topk=args.topk)
    print(f"{printable(shown)}:")
    for path, pred in zip(images, predictions, strict=True):
        ranked = ", ".join(f"{printable(label)} {p:.1%}" for label, p in zip(pred.labels, pred.probs, strict=True))
        print(f"  {printable(path)}: {ranked}")
    return 0
