"""``zoo download``: fetch and verify weights into the cache, for offline use."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo download``."""
    parser.add_argument(
        "names", nargs="+", metavar="NAME",
        help="arch (its default weights), arch.tag, or a pattern over arch.tag names such as 'resnet*'",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="download again even if a verified copy is cached")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo download``: fetch and verify each name, print where it is; 1 if any failed."""
    from zoo.errors import WeightsError
    from zoo.hub import manifest
    from zoo.hub.describe import expand_names, human_size
    from zoo.hub.fetch import fetch

    failed = 0
    for name in expand_names(args.names):
        try:
            path = fetch(name, force=args.force)
        except (WeightsError, ValueError, OSError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        arch, _, tag = name.partition(".")
        entry = manifest.get_entry(arch, tag)
        print(f"{name}  {path}  ({human_size(entry.size)}, sha256 {str(entry.sha256)[:16]}... verified)")
    return 1 if failed else 0
