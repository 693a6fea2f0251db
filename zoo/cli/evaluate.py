"""``zoo eval``: evaluate a model or checkpoint: top-1/top-5, loss, per-class accuracy, confusion matrix."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from zoo.cli.train import add_bad_image_options
from zoo.errors import ArgumentValueError, DataError, OutputFolderError
from zoo.utils import parse_device, write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo eval``."""
    parser.add_argument("model", help="model name: arch, or arch.tag for published weights")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a run folder, best.safetensors, or last.pt of `zoo train`")
    src.add_argument("--pretrained", action="store_true", help="the model's published weights and their transform")
    parser.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10, cifar100, imagefolder:PATH")
    parser.add_argument("--data-dir", help="folder holding the dataset, or a .tar.gz of an image folder "
                        "(see docs/training.md for layouts)")  # fmt: skip
    parser.add_argument("--split", choices=("test", "val", "train", "all"),
                        help="which images: test (the official test split, or the held-out images of the image "
                        "folder a run trained on; val is the same), train, or all. Default: test, but all of an "
                        "image folder that is not the run's own and has no val/ or test/")  # fmt: skip
    parser.add_argument("--val-split", type=float, help="image folders without val/ or test/: the held-out fraction "
                        "(default: the training run's, from its run.json)")  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed of --val-split (default: the training run's, else 42)")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), help="build the model with this stem")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for CIFAR and image folders")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    add_bad_image_options(parser)
    parser.add_argument("--output", help="a new folder for the confusion matrix and results.json (default: "
                        "evals/<model>-<dataset>-<time>); never a run's folder")  # fmt: skip
    parser.add_argument("--confusion", help="write the confusion-matrix PNG to this file instead (a new file or "
                        "one zoo eval wrote; never one in a run's folder)")  # fmt: skip
    parser.add_argument("--json", dest="json_out", help="also write the results as JSON here (a new file or one "
                        "zoo eval wrote; never one in a run's folder)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Run ``zoo eval``."""
    from zoo.data import create_datasets, parse_dataset
    from zoo.evaluation import (
        evaluate,
        format_results,
        load_run_model,
        plot_confusion,
        read_run_config,
        read_run_record,
    )
    from zoo.predict import refuse_tag_with_checkpoint

    if not args.checkpoint and not args.pretrained:
        raise ArgumentValueError("give --checkpoint PATH (a `zoo train` run) or --pretrained")
    refuse_tag_with_checkpoint(args.model, args.checkpoint, "eval", "--pretrained instead of --checkpoint")
    device = parse_device(args.device)  # before any data or weights are read
    kind, folder = parse_dataset(args.dataset, args.data_dir)
    out_dir = _eval_output(args, kind)
    _check_result_files(args)  # before any data or weights are read, as the output folder is
    model_kwargs = {"stem": args.stem} if args.stem else {}
    eval_transform = None
    normalization = None
    if args.pretrained:
        from zoo.factory import create_model

        model = create_model(args.model, pretrained=True, **model_kwargs)
        cfg = model.pretrained_cfg
        try:
            from zoo.data.transforms import create_transform
        except ImportError:
            create_transform = None
        if create_transform is not None and kind in ("cifar10", "cifar100", "imagefolder"):
            eval_transform = create_transform(cfg, training=False)
        normalization = (cfg["mean"], cfg["std"])
        run_cfg, run = None, None
    else:
        run_cfg = read_run_config(args.checkpoint)
        run = read_run_record(args.checkpoint)
        cfg = (run_cfg or {}).get("pretrained_cfg")
        if cfg:
            normalization = (cfg["mean"], cfg["std"])
    if cfg is None:
        from zoo.factory import create_model

        cfg = create_model(args.model, **model_kwargs).pretrained_cfg
    # The image folder a run trained on is split again the same way (the run's seed and fraction, from its
    # run.json), so that only its held-out images are evaluated; another folder is new to the model: all of it.
    own_folder = run is not None and _same_folder(run.get("data_dir"), folder, args.checkpoint)
    chosen = args.split or ("all" if kind == "imagefolder" and not own_folder and args.val_split is None else "test")
    split = "val" if chosen == "test" else chosen  # create_datasets' name for the evaluation split
    seed = args.seed if args.seed is not None else (run or {}).get("seed", 42)
    val_split = args.val_split if args.val_split is not None else (run or {}).get("val_split") if own_folder else None
    if split == "all":
        split, val_split = ("train", "val"), 0.0  # an image folder's: nothing held out (others ignore it)
    train_set, val_set, info = create_datasets(
        args.dataset, args.data_dir, model_cfg=cfg, val_split=val_split if kind == "imagefolder" else None,
        seed=seed, strict_images=args.strict_images, download=args.download, eval_transform=eval_transform,
        normalization=normalization if normalization and len(normalization[0]) in (1, 3) else None,
        splits=split if isinstance(split, tuple) else (split,),
    )  # fmt: skip
    if "train" in split and kind == "imagefolder" and eval_transform is None and train_set is not None:
        # Measure the training images as the model sees them at test time, without augmentation.
        from zoo.data.transforms import Augment, folder_transforms

        train_set.transform = folder_transforms(cfg, Augment())[1]
    if isinstance(split, tuple):
        import torch.utils.data

        parts = [d for d in (train_set, val_set) if d is not None and len(d)]
        dataset = torch.utils.data.ConcatDataset(parts) if len(parts) > 1 else (parts[0] if parts else None)
        shown = described = "all"
    else:
        dataset = val_set if split == "val" else train_set
        shown = ("test" if info.eval_split == "test" else "val") if split == "val" else split
        described = info.eval_set_name if split == "val" else split
    if dataset is None:
        raise DataError(f"{args.dataset} has no {shown} images")
    recorded = ((run or {}).get("data_identity") or {}).get("val_data") if own_folder and split == "val" else None
    if recorded:
        from zoo.data import data_fingerprint

        now = data_fingerprint(dataset)
        if now is not None and now["sha256"] != recorded.get("sha256"):
            import warnings

            warnings.warn(
                f"these are not the held-out images the run validated on: {now['images']} images with SHA-256 "
                f"{now['sha256'][:12]}… of their {now['of']}, the run's were {recorded.get('images')} with "
                f"{str(recorded.get('sha256'))[:12]}… (the folder changed since the run)",
                stacklevel=2,
            )
    if not args.pretrained:
        model, run_cfg = load_run_model(
            args.model, args.checkpoint, default_kwargs={"num_classes": info.num_classes, "in_chans": info.in_chans,
                                                          **model_kwargs},
        )  # fmt: skip
    if model.num_classes != info.num_classes:
        raise ArgumentValueError(
            f"{args.model} predicts {model.num_classes} classes but {info.name} has {info.num_classes}"
        )
    known = (run_cfg or {}).get("label_names") or model.pretrained_cfg.get("label_names")
    if kind == "imagefolder" and known:
        _check_same_classes([str(n) for n in known], list(info.classes), source_of(args), args.dataset)
    label_names = known or info.classes
    model.to(device)
    results = evaluate(
        model, dataset, batch_size=args.batch_size, workers=args.workers, device=device,
        label_names=label_names, amp=device.type == "cuda", progress=True,
    )  # fmt: skip
    source = source_of(args)
    title = f"{args.model} on {info.name} ({described}): {source}"
    print(format_results(results, title))
    record = {"model": args.model, "source": str(source), "dataset": info.name, "eval_set": described, **results}
    text = json.dumps(record, indent=1)
    png = Path(args.confusion) if args.confusion else out_dir / "confusion.png"
    if not args.confusion or not args.json_out:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "results.json", text)
    plot_confusion(results["confusion"], results["label_names"], png, title)
    print(f"confusion matrix: {png}")
    if args.json_out:
        write_text_atomic(args.json_out, text)  # replaces a link there, never through it
    sys.stdout.flush()
    return 0


EVAL_FILES = frozenset({"confusion.png", "results.json"})
# The keys every results JSON of zoo eval holds: an existing --json file with them is an earlier result.
RESULT_KEYS = frozenset({"model", "source", "dataset", "eval_set", "acc1", "confusion"})
# A results JSON is a few MB at most (a 1000-class confusion matrix); a larger file is not one: not read.
_MAX_RESULTS_BYTES = 64 << 20
# How many class names an error lists.
_SHOWN_CLASSES = 10


def source_of(args: argparse.Namespace) -> str:
    """What ``zoo eval`` evaluates, as its title and results name it: the checkpoint, or the published weights."""
    return args.checkpoint or f"{args.model} (pretrained)"


def _check_same_classes(known: list[str], found: list[str], source: str, dataset: str) -> None:
    """An image folder's classes (its sub-folders) must be the ones the weights were trained on, in order: the
    model's output k means the weights' class k, so scoring it against other classes measures nothing."""
    if known == found:
        return
    differ = next(
        (i for i, (a, b) in enumerate(zip(known, found, strict=False)) if a != b), min(len(known), len(found))
    )
    # Past the names shown, say where the lists part (a class added or renamed late in a long list).
    where = ""
    if differ >= _SHOWN_CLASSES:
        where = f"; class {differ} is {_at(known, differ)} for the weights, {_at(found, differ)} there"
    raise ArgumentValueError(
        f"{source} was trained on the classes {_listed(known)} but {dataset} has {_listed(found)}{where}: "
        "a model cannot be scored on classes it does not know",
        hint="evaluate it on a folder with one sub-folder per class it was trained on, named as in training",
    )


def _listed(names: list[str], shown: int = _SHOWN_CLASSES) -> str:
    # 1000 ImageNet classes would make the one error line unreadable: the first few and the count.
    text = ", ".join(names[:shown])
    return f"{text}, … ({len(names)} classes)" if len(names) > shown else text


def _at(names: list[str], i: int) -> str:
    return repr(names[i]) if i < len(names) else "missing"


def _is_results_json(path: Path) -> bool:
    """Whether ``path`` holds the results of an earlier ``zoo eval`` (which a new one may replace)."""
    from zoo.utils.files import parse_json

    try:
        if path.stat().st_size > _MAX_RESULTS_BYTES:
            return False
        record = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return False
    return isinstance(record, dict) and record.keys() >= RESULT_KEYS


def _check_result_files(args: argparse.Namespace) -> None:
    """``--json`` and ``--confusion``: the write-safety rule of :func:`zoo.utils.files.check_output_folder`
    (which judges folders), for one file. A new file, a link (replaced, never written through) or an earlier
    result of ``zoo eval`` may be written; a file in a training run's folder (its metrics.csv, curves.png) or
    one zoo did not write may not."""
    from zoo.evaluation import is_confusion_png

    options = (("--confusion", args.confusion, is_confusion_png), ("--json", args.json_out, _is_results_json))
    targets = [(option, Path(p), ours) for option, p, ours in options if p]
    if len(targets) == 2 and os.path.realpath(targets[0][1]) == os.path.realpath(targets[1][1]):
        raise ArgumentValueError(f"--confusion and --json both name {targets[0][1]}", hint="give two different files")
    for option, path, ours in targets:
        # The folder it lands in: a link to a run's folder is the run's folder.
        folder = Path(os.path.realpath(path.parent))
        if _is_run_folder(folder):
            raise OutputFolderError(
                f"{option} {path} is in the training run folder {folder}: zoo eval never writes a run's files",
                hint="give a path outside the run, or --output DIR for a new folder",
            )
        if path.is_symlink() or not path.exists():
            continue  # written as a new entry: a link there is replaced, never followed
        if path.is_dir():
            raise OutputFolderError(f"{option} {path} is a folder, not a file", hint="give a file name for the result")
        if not ours(path):
            raise OutputFolderError(
                f"{option} {path} is a file that zoo eval did not write: it replaces only its own results",
                hint="give a new file name, or move that file away first",
            )


def _is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a training run's: zoo's run.json marker, or only a run's files (not an empty folder)."""
    from zoo.training.checkpoint import is_run_folder

    try:
        return folder.is_dir() and bool(os.listdir(folder)) and is_run_folder(folder)
    except OSError:  # an unreadable folder is nobody's run; writing into it fails with its own error
        return False


def _eval_output(args: argparse.Namespace, kind: str) -> Path:
    """The folder this evaluation writes: new (or one of zoo's evaluation folders), never a run's."""
    from zoo.utils.files import check_output_folder

    if args.output:
        out = Path(args.output)
    else:
        base = f"{args.model.replace('.', '_')}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        out, n = Path("evals") / base, 1
        while out.exists():
            n += 1
            out = out.with_name(f"{base}-{n}")
    check_output_folder(out, "--output", "evaluation folder", lambda f: set(os.listdir(f)) <= EVAL_FILES)
    return out


def _same_folder(recorded: object, folder: Path, checkpoint: str | None) -> bool:
    """Whether ``folder`` is the data folder a run recorded (relative to where it was trained, or to the run)."""
    if not isinstance(recorded, str) or not recorded:
        return False
    here = folder.resolve()
    ck = Path(checkpoint) if checkpoint else None
    run_dir = (ck if ck.is_dir() else ck.parent) if ck is not None else None
    candidates = [Path(recorded).expanduser()]
    if run_dir is not None and not Path(recorded).is_absolute():
        candidates.append(run_dir.parent.parent / recorded)  # runs/NAME beside the working folder it was made in
    return any(c.resolve() == here for c in candidates)
