"""``zoo info``: parameters, default config, weights and a layer table with output sizes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo info``."""
    parser.add_argument("model", help="model name, arch or arch.tag")
    parser.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"), help="input size")
    parser.add_argument("--img-size", type=int, help="square input size (keeps the channels)")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), help="build with this stem")
    parser.add_argument("--num-classes", type=int, help="build with this many classes")
    parser.add_argument("--in-chans", type=int, help="build with this many input channels")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo info``."""
    from zoo.cli import check_size_options
    from zoo.info import describe_weights, format_info, model_info

    check_size_options(args.img_size, args.input_size)
    kwargs = {k: v for k in ("stem", "num_classes", "in_chans") if (v := getattr(args, k)) is not None}
    size = tuple(args.input_size) if args.input_size else None
    # Everything is worked out before anything is printed: a bad manifest entry is one error, not half a page.
    info = format_info(model_info(args.model, size, args.img_size, **kwargs))
    text = describe_weights(args.model, args.stem)
    print(info)
    if text:
        print()
        print(text)
    return 0
