"""``zoo publish``: turn a finished run into a verified, Hub-ready model folder.

zoo publish runs/mnist_cnn-fast --name mnist_cnn.mnist --out hub/mnist_cnn.mnist --bundle
zoo publish runs/resnet20-fmnist --name resnet20.fashion_mnist --repo-id ORG/resnet20.fashion_mnist --push
"""

from __future__ import annotations

import argparse

from zoo.cli import options_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo publish``."""
    parser.add_argument("run_dir", metavar="run", help="the run folder of `zoo train` (its --output)")
    parser.add_argument("--name", required=True, help="the weights' name, arch.tag (e.g. mnist_cnn.mnist)")
    parser.add_argument("--out", dest="out_dir", help="folder to write (model.safetensors, config.json, README.md ...)")
    parser.add_argument("--checkpoint", help="publish this safetensors file instead of the run's best.safetensors")
    parser.add_argument("--data-dir", help="where the evaluation data is (default: the run's)")
    parser.add_argument("--repo-id", help="Hugging Face repo id (default: $ZOO_HUB_ORG/NAME)")
    parser.add_argument("--push", action="store_true", help="upload the folder to the Hub after writing it")
    parser.add_argument("--dry-run", action="store_true", help="run the checks and show what would be written")
    parser.add_argument("--force", action="store_true", help="replace an existing folder or Hub revision")
    parser.add_argument("--bundle", action="store_true", help="also copy the weights into weights/ (small files)")
    parser.add_argument(
        "--manifest",
        dest="update_manifest",
        action="store_true",
        help="also add the entry to this installation's weights/manifest.json (--bundle implies it)",
    )
    parser.add_argument(
        "--default",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make these the weights pretrained=True picks for the bare arch (default: only if the arch has none)",
    )
    parser.add_argument("--license", dest="license_id", default="bsd-3-clause", help="licence of the weights")
    parser.add_argument("--tolerance", type=float, default=0.1, help="allowed top-1 drift in points (default 0.1)")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo publish``."""
    from zoo.publish import publish
    from zoo.utils.scores import score_text

    # The options are named as publish's parameters. A failed check or a bad input is a PublishError.
    result = publish(**options_for(publish, args))
    print("checks:")
    print("\n".join(c.line() for c in result.checks))
    print(f"model.safetensors  sha256 {result.sha256}  {result.size:,} bytes")
    print(f"top-1 {score_text(result.metrics['top1'], result.metrics['images'])} ({result.metrics['eval_set']})")
    if result.out_dir is None:
        upload = f" and upload them to {args.repo_id or 'the Hub'}" if args.push else ""
        print(f"dry run: would write{upload}:\n" + "\n".join(f"  {f}" for f in result.files))
        return 0
    print("wrote:\n" + "\n".join(f"  {f}" for f in result.files))
    if result.manifest_entry is not None:
        print(f"manifest entry {args.name}: {result.manifest_entry.status}")
    if result.commit_url:
        print(f"pushed: {result.commit_url}")
    return 0
