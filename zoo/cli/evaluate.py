"""``zoo eval``: evaluate a model or checkpoint: top-1/top-5, loss, per-class accuracy, confusion matrix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    parser.add_argument("--split", default="test", choices=("test", "val", "train"),
                        help="which split: test (the official test split, or an image folder's held-out images; "
                        "val is the same), or train")  # fmt: skip
    parser.add_argument("--val-split", type=float, help="image folders without val/ or test/: the held-out fraction "
                        "(default: the training run's, from its run.json)")  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed of --val-split (default: the training run's, else 42)")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), help="build the model with this stem")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for CIFAR and image folders")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    parser.add_argument("--strict-images", action="store_true", help="fail on an unreadable image instead of skipping")
    parser.add_argument("--confusion", help="confusion-matrix PNG path (default: beside the checkpoint, or ./)")
    parser.add_argument("--json", dest="json_out", help="also write the results as JSON here")


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

    if not args.checkpoint and not args.pretrained:
        raise ValueError("give --checkpoint PATH (a `zoo train` run) or --pretrained")
    device = parse_device(args.device)  # before any data or weights are read
    kind, _ = parse_dataset(args.dataset, args.data_dir)
    split = "val" if args.split == "test" else args.split  # create_datasets' name for the evaluation split
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
    # An image folder split by `zoo train` is split again the same way: the run's seed and fraction (in its
    # run.json), so that only its held-out images are evaluated.
    seed = args.seed if args.seed is not None else (run or {}).get("seed", 42)
    val_split = args.val_split if args.val_split is not None else (run or {}).get("val_split")
    train_set, val_set, info = create_datasets(
        args.dataset, args.data_dir, model_cfg=cfg, val_split=val_split if kind == "imagefolder" else None,
        seed=seed, strict_images=args.strict_images, download=args.download, eval_transform=eval_transform,
        normalization=normalization if normalization and len(normalization[0]) in (1, 3) else None,
        splits=(split,),
    )  # fmt: skip
    dataset = val_set if split == "val" else train_set
    if dataset is None:
        raise ValueError(f"{args.dataset} has no {split} images")
    shown = ("test" if info.eval_split == "test" else "val") if split == "val" else split
    described = info.eval_set_name if split == "val" else split
    if split == "train" and kind == "imagefolder" and eval_transform is None:
        # Measure the training images as the model sees them at test time, without augmentation.
        from zoo.data.transforms import Augment, folder_transforms

        dataset.transform = folder_transforms(cfg, Augment())[1]
    if not args.pretrained:
        model, run_cfg = load_run_model(
            args.model, args.checkpoint, default_kwargs={"num_classes": info.num_classes, "in_chans": info.in_chans,
                                                          **model_kwargs},
        )  # fmt: skip
    if model.num_classes != info.num_classes:
        raise ValueError(f"{args.model} predicts {model.num_classes} classes but {info.name} has {info.num_classes}")
    label_names = (run_cfg or {}).get("label_names") or model.pretrained_cfg.get("label_names") or info.classes
    model.to(device)
    results = evaluate(
        model, dataset, batch_size=args.batch_size, workers=args.workers, device=device,
        label_names=label_names, amp=device.type == "cuda", progress=True,
    )  # fmt: skip
    source = args.checkpoint or f"{args.model} (pretrained)"
    title = f"{args.model} on {info.name} ({described}): {source}"
    print(format_results(results, title))
    if args.confusion:
        png = Path(args.confusion)
    elif args.checkpoint:
        ck = Path(args.checkpoint)
        png = (ck if ck.is_dir() else ck.parent) / f"confusion_{info.name}_{shown}.png"
    else:
        png = Path(f"confusion_{args.model}_{info.name}_{shown}.png")
    plot_confusion(results["confusion"], results["label_names"], png, title)
    print(f"confusion matrix: {png}")
    if args.json_out:
        record = {"model": args.model, "source": str(source), "dataset": info.name, "eval_set": described, **results}
        write_text_atomic(args.json_out, json.dumps(record, indent=1))  # replaces a link there, never through it
    sys.stdout.flush()
    return 0
