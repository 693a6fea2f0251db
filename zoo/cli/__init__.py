"""The ``zoo`` command line.

Each sub-command is a module of this package (``zoo.cli.train``, ``zoo.cli.evaluate`` for ``eval`` ...)
that provides ``add_arguments(parser)`` and ``main(args) -> int``; it is imported only when that sub-command
runs, so ``zoo list`` stays fast. The modules hold only argument parsing and the glue to the library;
nothing in zoo imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module

# name -> one-line help; the command lives in zoo.cli.<name> (``add_arguments`` and ``main``).
COMMANDS: dict[str, str] = {
    "list": "list registered models (or, with --pretrained, every arch.tag with weights)",
    "info": "parameters, default config, weights and a layer table with output sizes",
    "download": "fetch and verify weights into the cache, for offline use",
    "convert": "convert torchvision or timm weights to a verified safetensors file",
    "train": "train a model on MNIST, Fashion-MNIST, CIFAR or an image folder",
    "eval": "evaluate a model or checkpoint: top-1/top-5, loss, per-class, confusion",
    "publish": "turn a finished run into a verified, Hub-ready model folder",
    "predict": "classify image files (no arguments: the bundled sample images)",
    "bench": "inference and training throughput, MACs, parameters and peak memory",
}
# Commands whose module name differs, so that no module shadows a builtin (list, eval) in this package.
_MODULES = {"list": "list_models", "eval": "evaluate"}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="zoo: PyTorch image-classification models, verified weights, training and publishing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {n:<10} {h}" for n, h in COMMANDS.items())
        + "\n\n'zoo COMMAND --help' shows a command's options.",
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser for one sub-command and the function that runs it."""
    parser = argparse.ArgumentParser(prog=f"zoo {command}", description=COMMANDS[command])
    module = import_module(f"zoo.cli.{_MODULES.get(command, command)}")
    module.add_arguments(parser)
    return parser, module.main


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
