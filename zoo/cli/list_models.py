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
    if args.pretrained:
        _print_weights(names, width)
        return 0
    for name in names:
        print(f"{name:<{width}}  {model_summary_line(name)}" if args.verbose else name)
    return 0


def _print_weights(names: list[str], width: int) -> None:
    """One line per weights: where the file comes from (in order), what its SHA-256 is checked against, top-1."""
    from zoo.pretrained import manifest

    rows = []
    for name in names:
        entry = manifest.get_entry(*name.split(".", 1))
        where = ", ".join(s.type if s.type != "hub" else f"hub:{s.resolved().repo_id}" for s in entry.sources)
        checked = "unpublished" if not entry.published else "upstream, then pin" if entry.third_party else "manifest"
        top1 = (entry.metrics or {}).get("top1")
        rows.append((name, where, checked, "-" if top1 is None else f"{top1:.2f}"))
    source_width = max(len("sources (tried in order)"), *(len(r[1]) for r in rows))
    print(f"{'weights':<{width}}  {'sources (tried in order)':<{source_width}}  {'sha256 from':<18}  top-1")
    for name, where, checked, top1 in rows:
        print(f"{name:<{width}}  {where:<{source_width}}  {checked:<18}  {top1}")
