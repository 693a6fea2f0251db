"""The ``zoo`` command line.

Each sub-command is a module of this package (``zoo.cli.train``, ``zoo.cli.evaluate`` for ``eval`` ...)
that provides ``add_arguments(parser)`` and ``main(args) -> int``; it is imported only when that sub-command
runs, so ``zoo list`` stays fast. The modules hold only argument parsing and the glue to the library;
nothing in zoo imports them.

:func:`main` is the one error boundary. An expected failure (one of zoo's own types,
:class:`zoo.errors.ZooError`, or an ``OSError`` such as a full disk or a missing file) is printed as one line,
``zoo CMD: error: <what> — <what to do>`` (a listing of keys or checks may follow, indented), and the
exit code is 2; ``zoo --debug CMD`` or ``ZOO_DEBUG=1`` prints its traceback too. Any other exception, a
plain ``ValueError`` or ``TypeError`` included, is a bug in zoo (bad input is always raised as a ZooError)
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module

from zoo.errors import ArgumentValueError, ZooError
from zoo.utils import env_flag

# name -> one-line help; the command lives in zoo.cli.<name> (``add_arguments`` and ``main``).
COMMANDS: dict[str, str] = {
    "list": "list registered models (or, with --pretrained, every arch.tag with weights)",
    "info": "parameters, default config, weights and a layer table with output sizes",
    "download": "fetch and verify weights into the cache, for offline use",
    "pin": "write the Hub commit and SHA-256 of third-party weights into the manifest",
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


# What to do about an OSError, by its errno (the message already says what happened and to which file).
_OS_HINTS = {
    errno.ENOSPC: "free some disk space, or write to a disk with room",
    errno.EDQUOT: "free some space in your quota, or write elsewhere",
    errno.EROFS: "that file system is read-only: choose a writable place",
    errno.EACCES: "check the permissions, or choose a place you may use",
    errno.EPERM: "check the permissions, or choose a place you may use",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EEXIST: "choose another path",
}
_OS_TYPES = {FileNotFoundError: errno.ENOENT, IsADirectoryError: errno.EISDIR, NotADirectoryError: errno.ENOTDIR,
             PermissionError: errno.EACCES, FileExistsError: errno.EEXIST}  # fmt: skip


def _expected() -> tuple[type[BaseException], ...]:
    """The exception types that are expected failures rather than bugs."""
    types: list[type[BaseException]] = [ZooError, OSError]
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None)
    if isinstance(oom, type):
        types.append(oom)
    return tuple(types)


def _what_and_hint(error: BaseException) -> tuple[str, str | None]:
    if isinstance(error, ZooError):
        return (str(error.args[0]) if error.args else type(error).__name__), error.hint
    if isinstance(error, OSError) and not isinstance(error, ValueError):
        code = error.errno if error.errno is not None else next(
            (c for t, c in _OS_TYPES.items() if isinstance(error, t)), None
        )  # fmt: skip
        if error.strerror and error.filename is not None:
            where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
            return f"{where}: {error.strerror}", _OS_HINTS.get(code)
        return str(error) or type(error).__name__, _OS_HINTS.get(code)
    if type(error).__name__ == "OutOfMemoryError":
        return str(error).splitlines()[0], "use a smaller --batch-size, or another device"
    return str(error) or type(error).__name__, None


def error_lines(command: str, error: BaseException) -> str:
    """``zoo CMD: error: <what> — <what to do>``, then any detail lines of the message (indented listings)."""
    what, hint = _what_and_hint(error)
    first, *rest = what.strip().splitlines() or [type(error).__name__]
    if hint and rest and first.rstrip().endswith(":"):  # the first line introduces a listing: hint after it
        return "\n".join([f"zoo {command}: error: {first}", *rest, f"  — {hint}"])
    head = f"zoo {command}: error: {first}" + (f" — {hint}" if hint else "")
    return "\n".join([head, *rest])


def check_size_options(img_size: int | None, input_size: Sequence[int] | None) -> None:
    """``--img-size`` and ``--input-size`` within the limits a model's config has (``MAX_INPUT_SIDE`` pixels a
    side, ``MAX_CHANNELS`` channels), checked before a model or an input is built: a 100000-pixel side would
    otherwise end in an allocator failure. Values below 1 are left to the library, whose errors name them."""
    from zoo.models.cfg import INPUT_LIMITS, MAX_INPUT_SIDE, input_size_within_limits

    if img_size is not None and img_size > MAX_INPUT_SIDE:
        raise ArgumentValueError(f"--img-size {img_size}: larger than the {MAX_INPUT_SIDE} pixels a side zoo takes",
                                 hint=f"give at most {MAX_INPUT_SIDE}")  # fmt: skip
    if input_size is not None and not input_size_within_limits(input_size):
        raise ArgumentValueError(f"--input-size {' '.join(map(str, input_size))}: beyond what zoo takes",
                                 hint=f"give {INPUT_LIMITS}")  # fmt: skip


def _debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    debug = env_flag("ZOO_DEBUG")
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    return debug, argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, argv = _debug_requested(argv)
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
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`zoo list | head`): stop quietly, as shell tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except _expected() as e:
        # An expected failure: its message names the problem and what is valid; a traceback adds nothing.
        if debug:
            traceback.print_exc()
        print(error_lines(argv[0], e), file=sys.stderr)
        return 2
