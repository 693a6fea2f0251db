"""``zoo eval``: evaluate a model or checkpoint (:func:`zoo.evaluation.evaluate_weights`): top-1/top-5, loss,
per-class accuracy, confusion matrix."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from zoo.cli import options_for
from zoo.errors import ArgumentValueError, OutputFolderError
from zoo.utils.files import check_output_file, check_output_folder, write_text_atomic

# The keys every results JSON of zoo eval holds: an existing --json file with them is an earlier result.
RESULT_KEYS = frozenset({"model", "source", "dataset", "eval_set", "acc1", "confusion"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo eval``."""
    parser.add_argument("model", help="model name: arch, or arch.tag for published weights")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a run folder, best.safetensors, or last.pt of `zoo train`")
    src.add_argument("--pretrained", action="store_true", help="the model's published weights and their transform")
    parser.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10, cifar100, imagefolder:PATH")
    parser.add_argument(
        "--data-dir",
        help="folder holding the dataset, or a .tar.gz of an image folder (see docs/training.md for layouts)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "val", "train", "all"),
        help="which images: test (the official test split, or the held-out images of the image "
        "folder a run trained on; val is the same), train, or all. Default: test, but all of an "
        "image folder that is not the run's own and has no val/ or test/",
    )
    parser.add_argument(
        "--val-split",
        type=float,
        help="image folders without val/ or test/: the held-out fraction "
        "(default: the training run's, from its run.json)",
    )
    parser.add_argument("--seed", type=int, help="seed of --val-split (default: the training run's, else 42)")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), help="build the model with this stem")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for CIFAR and image folders")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out unreadable images (listed on stderr) instead of failing",
    )
    parser.add_argument(
        "--output",
        help="a new folder for the confusion matrix and results.json (default: "
        "evals/<model>-<dataset>-<time>); never a run's folder",
    )
    parser.add_argument(
        "--confusion",
        help="write the confusion-matrix PNG to this file instead (a new file or "
        "one zoo eval wrote; never one in a run's folder)",
    )
    parser.add_argument(
        "--json",
        dest="json_out",
        help="also write the results as JSON here (a new file or one zoo eval wrote; never one in a run's folder)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``zoo eval``."""
    from zoo.data import parse_dataset
    from zoo.evaluation import evaluate_weights, format_results, plot_confusion

    # A new folder (numbered when one of that name exists), or one of zoo's evaluation folders; never a run's.
    kind = parse_dataset(args.dataset, args.data_dir)[0]
    base = f"{args.model.replace('.', '_')}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir, n = Path(args.output or Path("evals") / base), 1
    while not args.output and out_dir.exists():
        n += 1
        out_dir = out_dir.with_name(f"{base}-{n}")
    check_output_folder(out_dir, "--output", "evaluation folder", _is_eval_folder)
    _check_result_files(args)  # before any data or weights are read, as the output folder is
    results = evaluate_weights(**options_for(evaluate_weights, args))  # the options are named as its parameters
    title = f"{args.model} on {results['dataset']} ({results['eval_set']}): {results['source']}"
    print(format_results(results, title))
    text = json.dumps(results, indent=1)
    png = Path(args.confusion) if args.confusion else out_dir / "confusion.png"
    if not args.confusion or not args.json_out:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "results.json", text)
    plot_confusion(results["confusion"], results["label_names"], png, title)
    print(f"confusion matrix: {png}", flush=True)
    if args.json_out:
        write_text_atomic(args.json_out, text)
    return 0


def _is_eval_folder(folder: Path) -> bool:
    """A folder zoo eval wrote, known by its content: regular files, each a result zoo eval wrote."""
    from zoo.evaluation import is_confusion_png
    from zoo.runs import json_of

    ours = {"results.json": lambda p: json_of(p, RESULT_KEYS) is not None, "confusion.png": is_confusion_png}
    entries = list(os.scandir(folder))
    return all(e.name in ours and e.is_file(follow_symlinks=False) and ours[e.name](e.path) for e in entries)


def _check_result_files(args: argparse.Namespace) -> None:
    """``--json`` and ``--confusion``: the rule of every user-named output (a new file, or an earlier result of
    ``zoo eval``; never a link or a user's file), and never a file in a run's folder."""
    from zoo.evaluation import is_confusion_png
    from zoo.runs import is_run_folder, json_of

    is_results = lambda p: json_of(p, RESULT_KEYS) is not None  # noqa: E731  (an earlier result of zoo eval)
    options = (("--confusion", args.confusion, is_confusion_png), ("--json", args.json_out, is_results))
    targets = [(option, Path(p), ours) for option, p, ours in options if p]
    if len(targets) == 2 and os.path.realpath(targets[0][1]) == os.path.realpath(targets[1][1]):
        raise ArgumentValueError(f"--confusion and --json both name {targets[0][1]}", hint="give two different files")
    for option, path, ours in targets:
        folder = Path(os.path.realpath(path.parent))  # a link to a run's folder is the run's folder
        if is_run_folder(folder):
            raise OutputFolderError(
                f"{option} {path} is in the training run folder {folder}: zoo eval never writes a run's files",
                hint="give a path outside the run, or --output DIR for a new folder",
            )
        check_output_file(path, option, ours)
