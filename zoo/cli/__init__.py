"""The ``zoo`` command line: one module per sub-command (``add_arguments(parser)``, ``main(args) -> int``),
imported only when it runs. The modules parse arguments and call the library; nothing in zoo imports them.

:func:`main` is the one error boundary: an expected failure (a :class:`zoo.errors.ZooError`, an ``OSError``,
running out of memory) is one line, ``zoo CMD: error: <what> — <what to do>``, exit code 2 (``--debug`` or
``ZOO_DEBUG=1`` adds the traceback); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from zoo.errors import ArgumentValueError, ZooError
from zoo.utils import checks, env_flag

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
    "export": "a model and its weights as ONNX or torch.export, checked against eager",
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
    parser.add_argument("--debug", action="store_true", help="print the traceback of errors too (or ZOO_DEBUG=1)")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser for one sub-command and the function that runs it."""
    parser = argparse.ArgumentParser(prog=f"zoo {command}", description=COMMANDS[command])
    module = import_module(f"zoo.cli.{_MODULES.get(command, command)}")
    module.add_arguments(parser)
    return parser, module.main


# What to do about an OSError, by its errno or type (the message already says what happened and to which file).
_OS_HINTS: dict[Any, str] = {
    errno.ENOSPC: "free some disk space, or write to a disk with room",
    errno.EDQUOT: "free some space in your quota, or write elsewhere",
    errno.EROFS: "that file system is read-only: choose a writable place",
    PermissionError: "check the permissions, or choose a place you may use",
    FileNotFoundError: "check the path",
    IsADirectoryError: "give a file, not a folder",
    NotADirectoryError: "a part of the path is a file, not a folder: check the path",
    FileExistsError: "choose another path",
}


def _out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory error, or the CPU allocator's, which torch raises as a plain RuntimeError."""
    return type(error).__name__ == "OutOfMemoryError" or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


def _what_and_hint(error: BaseException) -> tuple[str, str | None]:
    if isinstance(error, ZooError):
        return (str(error.args[0]) if error.args else type(error).__name__), error.hint
    if _out_of_memory(error):
        first = str(error).strip().splitlines()[0]
        return first, "use a smaller --batch-size or input size, or another device"
    hint = _OS_HINTS.get(error.errno) or next(
        (h for t, h in _OS_HINTS.items() if type(t) is type and isinstance(error, t)), None
    )  # type: ignore[attr-defined]
    if error.strerror and error.filename is not None:  # type: ignore[attr-defined]
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")  # type: ignore[attr-defined]
        return f"{where}: {error.strerror}", hint  # type: ignore[attr-defined]
    return str(error) or type(error).__name__, hint


def error_lines(command: str, error: BaseException) -> str:
    """``zoo CMD: error: <what> — <what to do>``, then any detail lines of the message (indented listings)."""
    what, hint = _what_and_hint(error)
    first, *rest = what.strip().splitlines() or [type(error).__name__]
    if hint and rest and first.rstrip().endswith(":"):  # the first line introduces a listing: hint after it
        return "\n".join([f"zoo {command}: error: {first}", *rest, f"  — {hint}"])
    head = f"zoo {command}: error: {first}" + (f" — {hint}" if hint else "")
    return "\n".join([head, *rest])


def options_for(function: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options that are parameters of ``function``: a command's options carry its library's names."""
    import inspect

    return {k: v for k, v in vars(args).items() if k in inspect.signature(function).parameters}


def check_size_options(img_size: int | None, input_size: Sequence[int] | None) -> None:
    """``--img-size`` and ``--input-size`` within the limits of a model's config, before anything is built: a
    100000-pixel side would otherwise end in an allocator failure."""
    limits = f"sides of 1 to {checks.MAX_INPUT_SIDE} pixels, at most {checks.MAX_CHANNELS} channels"
    with checks.reported("the options", ArgumentValueError, hint=f"give {limits}"):
        if img_size is not None:
            checks.int_in("--img-size", img_size, 1, checks.MAX_INPUT_SIDE)
        if input_size is not None:
            checks.input_size("--input-size", input_size)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = env_flag("ZOO_DEBUG")
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1])  # exits with argparse's "invalid choice" message
    parser, run = build_parser(argv[0])
    # Options may stand between positionals (`zoo predict resnet20 --checkpoint F photo.jpg`), as in the course;
    # argparse cannot intermix a command whose positionals take the rest of the line (`zoo convert`).
    try:
        args = parser.parse_intermixed_args(argv[1:])
    except TypeError:
        args = parser.parse_args(argv[1:])
    args.argv = argv[1:]  # the command's own words, for records such as a training run's command line
    if not debug:  # a warning is one line, as an error is; --debug keeps Python's file and source line
        warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`zoo list | head`): stop quietly, as shell tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        # An expected failure (bad input, a missing file, a full disk or memory) is one line; anything else, a
        # plain ValueError or TypeError included, is a bug in zoo and keeps its traceback.
        if not (isinstance(e, (ZooError, OSError)) or _out_of_memory(e)):
            raise
        if debug:
            traceback.print_exc()
        print(error_lines(argv[0], e), file=sys.stderr)
        return 2
