"""``zoo list``: registered models, or with ``--pretrained`` every ``arch.tag`` that has weights."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo list``."""
    parser.add_argument("pattern", nargs="*", help="fnmatch patterns, e.g. 'resnet*' (default: all)")
    parser.add_argument("--exclude", action="append", default=[], help="pattern to leave out (repeatable)")
    parser.add_argument("--pretrained", action="store_true", help="list arch.tag names that have weights")
    parser.add_argument("-v", "--verbose", action="store_true", help="add each model's description")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo list``."""
    from zoo.factory import list_models
    from zoo.registry import model_summary_line

    names = list_models(args.pattern, exclude_filters=args.exclude, pretrained=args.pretrained)
    if not names:
        print(f"no model matches {' '.join(args.pattern) or '*'}", file=sys.stderr)
        return 1
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {model_summary_line(name)}" if args.verbose else name)
    return 0
