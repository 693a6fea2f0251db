"""The ``zoo`` command line.

Each sub-command lives in the module that implements it, which provides ``add_arguments(parser)``
and ``main(args) -> int``; it is imported only when that sub-command runs, so ``zoo list`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("zoo.cli", "list registered models (or, with --pretrained, every arch.tag with weights)"),
    "info": ("zoo.cli", "parameters, default config, weights and a layer table with output sizes"),
    "download": ("zoo.weights", "fetch and verify weights into the cache, for offline use"),
    "convert": ("zoo.convert", "convert torchvision or timm weights to a verified safetensors file"),
    "train": ("zoo.train", "train a model on MNIST, Fashion-MNIST, CIFAR or an image folder"),
    "eval": ("zoo.evaluate", "evaluate a model or checkpoint: top-1/top-5, loss, per-class, confusion"),
    "publish": ("zoo.publish", "turn a finished run into a verified, Hub-ready model folder"),
    "predict": ("zoo.predict", "classify image files (no arguments: the bundled sample images)"),
}


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="*", help="fnmatch patterns, e.g. 'resnet*' (default: all)")
    parser.add_argument("--exclude", action="append", default=[], help="pattern to leave out (repeatable)")
    parser.add_argument("--pretrained", action="store_true", help="list arch.tag names that have weights")
    parser.add_argument("-v", "--verbose", action="store_true", help="add each model's description")


def run_list(args: argparse.Namespace) -> int:
    from zoo.registry import list_models, model_summary_line

    names = list_models(args.pattern, exclude_filters=args.exclude, pretrained=args.pretrained)
    if not names:
        print(f"no model matches {' '.join(args.pattern) or '*'}", file=sys.stderr)
        return 1
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {model_summary_line(name)}" if args.verbose else name)
    return 0


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name, arch or arch.tag")
    parser.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"), help="input size")
    parser.add_argument("--img-size", type=int, help="square input size (keeps the channels)")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), help="build with this stem")
    parser.add_argument("--num-classes", type=int, help="build with this many classes")
    parser.add_argument("--in-chans", type=int, help="build with this many input channels")


def run_info(args: argparse.Namespace) -> int:
    from zoo.info import format_info, model_info

    kwargs = {k: v for k, v in (("stem", args.stem), ("num_classes", args.num_classes),
                                ("in_chans", args.in_chans)) if v is not None}  # fmt: skip
    size = tuple(args.input_size) if args.input_size else None
    if args.img_size is not None:
        channels = size[0] if size else kwargs.get("in_chans")
        if channels is None:
            from zoo.factory import create_model

            channels = create_model(args.model, **kwargs).in_chans
        size = (channels, args.img_size, args.img_size)
    info = model_info(args.model, input_size=size, **kwargs)
    print(format_info(info))
    try:
        from zoo.weights import describe_weights
    except ImportError:
        return 0
    text = describe_weights(args.model)
    if text:
        print()
        print(text)
    return 0


_LOCAL = {"list": (add_list_arguments, run_list), "info": (add_info_arguments, run_info)}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="zoo: PyTorch image-classification models, verified weights, training and publishing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {n:<10} {h}" for n, (_, h) in COMMANDS.items())
        + "\n\n'zoo COMMAND --help' shows a command's options.",
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser for one sub-command and the function that runs it."""
    module_name, help_text = COMMANDS[command]
    parser = argparse.ArgumentParser(prog=f"zoo {command}", description=help_text)
    if command in _LOCAL:
        add, run = _LOCAL[command]
    else:
        module = import_module(module_name)
        add, run = module.add_arguments, module.main
    add(parser)
    return parser, run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1])  # exits with argparse's "invalid choice" message
    parser, run = build_parser(argv[0])
    args = parser.parse_args(argv[1:])
    args.argv = argv[1:]  # the command's own words, for records such as a training run's command line
    try:
        return int(run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        # Errors from bad input already name the problem and what is valid; a traceback adds nothing.
        print(f"zoo {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`zoo list | head`): stop quietly, as shell tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
