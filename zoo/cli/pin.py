"""``zoo pin``: write the Hub commit and SHA-256 of third-party weights into the manifest (needs network)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo pin``."""
    parser.add_argument("names", nargs="*", metavar="NAME", help="arch, arch.tag or a pattern such as 'resnet*'")
    parser.add_argument("--all", action="store_true", help="every entry with a third-party source")
    parser.add_argument("--no-urls", action="store_true", help="pin only Hub sources (URLs need a full download)")
    parser.add_argument("--manifest", metavar="PATH", help="the manifest to write (default: the one zoo reads)")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo pin``: pin each name's third-party sources; 1 if any failed."""
    from zoo.errors import WeightsError
    from zoo.pretrained import manifest
    from zoo.pretrained.load import expand_names
    from zoo.pretrained.release import pin_entry

    if args.all == bool(args.names):
        print("zoo pin: error: give weights names or --all (not both)", file=sys.stderr)
        return 2
    names = manifest.weight_names() if args.all else expand_names(args.names)
    third_party = [n for n in names if manifest.get_entry(*n.split(".", 1)).third_party]
    if not third_party:
        print("nothing to pin: these weights are this project's own (their SHA-256 is in the manifest)")
        return 0
    failed = 0
    for name in third_party:
        try:
            entry = pin_entry(name, path=args.manifest, urls=not args.no_urls)
        except (WeightsError, ValueError, OSError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        for source in entry.sources:
            if source.sha256:
                at = f" @ {source.revision}" if source.type == "hub" else ""
                print(f"{name}  {manifest.describe(manifest.resolve(source))}{at}  sha256 {source.sha256}")
    return 1 if failed else 0
