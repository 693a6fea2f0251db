"""``zoo export``: a model and its weights as ONNX or a torch.export program, checked against eager.

zoo export resnet20.cifar10 --format onnx                 # -> exports/resnet20.cifar10.onnx (+ .onnx.json)
zoo export runs/x --format pt2 --output model.pt2         # a run folder, a published folder or a .safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.errors import ArgumentValueError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo export``."""
    parser.add_argument(
        "model",
        help="arch.tag (its published weights), or a run folder, published folder or "
        ".safetensors file (the architecture from its header)",
    )
    parser.add_argument(
        "--format",
        default="onnx",
        choices=("onnx", "pt2"),
        help="onnx (checked with ONNX Runtime) or pt2 (torch.export.save)",
    )
    parser.add_argument("--output", help="the file to write (default exports/<name>.<format>)")
    parser.add_argument("--batch", type=int, help="a fixed batch size (default: a dynamic batch dimension)")
    parser.add_argument("--atol", type=float, default=1e-4, help="allowed absolute difference from eager")
    parser.add_argument("--rtol", type=float, default=1e-3, help="allowed difference relative to |eager output|")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo export``."""
    from zoo.export import FORMATS, describe, export_model
    from zoo.predict import create_for_prediction
    from zoo.registry import is_model, split_model_name_tag

    arch, tag = split_model_name_tag(args.model)
    if Path(args.model).exists():
        model = create_for_prediction(None, args.model)
        name = Path(args.model).resolve().name.removesuffix(".safetensors")
    elif is_model(arch) and tag:
        model, name = create_for_prediction(args.model, None), args.model
    else:
        raise ArgumentValueError(f"{args.model!r} is neither weights, arch.tag (e.g. resnet20.cifar10), nor a file")
    out = Path(args.output) if args.output else Path("exports") / f"{name}{FORMATS[args.format]}"
    print(describe(export_model(model, out, args.format, name=name, batch=args.batch, atol=args.atol, rtol=args.rtol)))
    return 0
