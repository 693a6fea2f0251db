"""``zoo download``: fetch and verify weights into the cache, for offline use."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo download``."""
    parser.add_argument("names", nargs="+", metavar="NAME", help="arch (its default weights), arch.tag or 'resnet*'")
    parser.add_argument("--force", action="store_true", help="download again even if a verified copy is cached")
    unpin = "forget what this machine pinned for the weights (after a legitimate upstream change), then fetch"
    parser.add_argument("--unpin", action="store_true", help=unpin)


def main(args: argparse.Namespace) -> int:
    """Run ``zoo download``: fetch and verify each name, print where it is; 1 if any failed."""
    from zoo.errors import WeightsError
    from zoo.pretrained.cache import remove_pins
    from zoo.pretrained.fetch import fetch_file
    from zoo.pretrained.load import expand_names

    failed = 0
    for name in expand_names(args.names):
        if args.unpin and remove_pins(name):
            print(f"{name}: forgot this machine's pin; the file is verified against upstream again")
        try:
            path, source = fetch_file(name, force=args.force)
        except (WeightsError, ValueError, OSError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        served = source.describe() if source is not None else "converted locally"
        print(f"{name}  {path}  ({path.stat().st_size / 2**20:.1f} MiB, verified; from {served})")
    return 1 if failed else 0
