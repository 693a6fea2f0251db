"""``zoo train``: train a model on MNIST, Fashion-MNIST, CIFAR or an image folder.

``torchrun --nproc-per-node N -m zoo train ...`` runs the same command under DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

# CLI option -> recipe field, for the options that override a recipe value.
_OVERRIDES = {
    "epochs": int, "batch_size": int, "opt": str, "lr": float, "momentum": float, "weight_decay": float,
    "sched": str, "decay_epochs": float, "decay_rate": float, "warmup_epochs": float, "warmup_lr": float,
    "min_lr": float, "label_smoothing": float, "mixup": float, "cutmix": float, "ema_decay": float,
    "grad_clip": float, "crop_pad": int, "hflip": float, "rand_augment": str, "workers": int, "seed": int,
    "eval_batch_size": int,
}  # fmt: skip
_BOOL_OVERRIDES = ("ema", "amp", "channels_last")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo train``."""
    from zoo.training.recipes import list_recipes

    parser.add_argument("model", nargs="?", help="model name (arch, or arch.tag with --pretrained)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, cifar100, imagefolder (or imagefolder:PATH)")
    data.add_argument("--data-dir", help="the dataset's folder (see docs/training.md for the layouts)")
    data.add_argument("--val-split", type=float, help="image folders without val/: held-out fraction (default 0.1)")
    data.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    data.add_argument("--strict-images", action="store_true", help="fail on an unreadable image instead of skipping it")
    data.add_argument("--train-subset", type=int, help="train on a seeded random subset of this many images")
    data.add_argument("--val-subset", type=int, help="validate on a seeded random subset of this many images")

    rec = parser.add_argument_group("recipe (any option below overrides the recipe's value)")
    rec.add_argument("--recipe", default="fast", help=f"one of {', '.join(list_recipes())} (default fast)")
    rec.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    for name, typ in _OVERRIDES.items():
        rec.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, metavar=typ.__name__.upper())
    for name in _BOOL_OVERRIDES:
        rec.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None)
    rec.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="set any recipe field")

    mdl = parser.add_argument_group("model")
    mdl.add_argument("--pretrained", action="store_true", help="start from the model's published weights")
    mdl.add_argument("--stem", choices=("imagenet", "cifar"), help="ResNet/VGG stem (cifar for 32x32 inputs)")
    mdl.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE", help="builder keyword argument")

    run = parser.add_argument_group("run")
    run.add_argument("--output", help="run folder (default runs/<model>-<dataset>-<time>)")
    run.add_argument("--resume", nargs="?", const="", help="continue the run in --output, or in this folder/last.pt")
    run.add_argument("--logger", action="append", default=[], choices=("tensorboard", "visdom"),
                     help="extra live logger (repeatable); metrics.csv and curves.png are always written")  # fmt: skip
    run.add_argument("--visdom-server", default="http://localhost")
    run.add_argument("--visdom-port", type=int, default=8097)
    run.add_argument("--visdom-env", help="Visdom environment (default: the run folder's name)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda")
    run.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                     help="deterministic algorithms (default: on for CPU)")  # fmt: skip
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        out[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return out


def resolve_recipe_from_args(args: argparse.Namespace, dataset_kind: str | None) -> Any:
    """The named recipe for the dataset kind, with every option given on the command line applied."""
    from zoo.training.recipes import get_recipe

    overrides = {k: getattr(args, k) for k in (*_OVERRIDES, *_BOOL_OVERRIDES) if getattr(args, k, None) is not None}
    recipe = get_recipe(args.recipe, dataset_kind)
    typed = {f: type(getattr(recipe, f)) for f in recipe.to_dict()}
    extra = _key_values(args.set, "--set")
    for k, v in extra.items():
        if k in typed and typed[k] is float and isinstance(v, int):
            extra[k] = float(v)
        elif k in typed and typed[k] is str:
            extra[k] = str(v)
    return recipe.replace(**{**extra, **overrides})


def main(args: argparse.Namespace) -> int:
    """Run ``zoo train``."""
    from zoo.data import create_datasets, parse_dataset, subset
    from zoo.data.transforms import Augment
    from zoo.training import Recipe, fit
    from zoo.training.checkpoint import seed_everything
    from zoo.training.distributed import distributed_session
    from zoo.training.recipes import format_recipe

    dataset_kind = parse_dataset(args.dataset, args.data_dir or ".")[0] if args.dataset else None
    recipe = resolve_recipe_from_args(args, dataset_kind)
    if args.print_recipe:
        print(f"# recipe {recipe.name}" + (f" for {dataset_kind}" if dataset_kind else ""))
        print(format_recipe(recipe))
        return 0
    if not args.model:
        raise ValueError("name the model to train, e.g. `zoo train mnist_cnn --dataset mnist --data-dir DATA`")
    if not args.dataset:
        raise ValueError("--dataset is required (mnist, fashion_mnist, cifar10, cifar100, imagefolder:PATH)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from zoo.factory import create_model
    from zoo.registry import split_model_name_tag

    with distributed_session(args.device) as (rank, _world, device):
        out_dir = _output_dir(args, dataset_kind)
        if args.resume is not None:
            resume_path = Path(args.resume) if args.resume else out_dir
            if resume_path.is_file():
                out_dir = resume_path.parent
            elif args.resume:
                out_dir = resume_path
            saved = _saved_recipe(out_dir)
            if saved:
                recipe = Recipe().replace(**{**saved, "epochs": args.epochs or saved["epochs"]})
        seed_everything(recipe.seed)
        model_kwargs: dict[str, Any] = _key_values(args.model_arg, "--model-arg")
        if args.stem:
            model_kwargs["stem"] = args.stem
        arch = split_model_name_tag(args.model)[0]
        # The dataset decides classes and channels; a model built first tells an image folder its input size.
        aug = Augment(crop_pad=recipe.crop_pad, hflip=recipe.hflip, rand_augment=recipe.rand_augment)
        eval_transform, normalization, cfg = None, None, None
        if dataset_kind == "imagefolder" and not args.pretrained:
            cfg = create_model(arch, **model_kwargs).pretrained_cfg
        if args.pretrained:
            pre = create_model(args.model, pretrained=True, **model_kwargs)
            cfg = pre.pretrained_cfg
            normalization = (cfg["mean"], cfg["std"])
            try:
                from zoo.data.transforms import create_transform

                if dataset_kind in ("cifar10", "cifar100", "imagefolder"):
                    eval_transform = create_transform(cfg, training=False)
            except ImportError:
                pass
        train_set, val_set, info = create_datasets(
            args.dataset, args.data_dir, model_cfg=cfg, augment=aug, val_split=args.val_split, seed=recipe.seed,
            strict_images=args.strict_images, download=args.download and rank == 0, eval_transform=eval_transform,
            normalization=normalization if normalization and len(normalization[0]) in (1, 3) else None,
        )  # fmt: skip
        train_set = subset(train_set, args.train_subset, recipe.seed)
        if val_set is not None:
            val_set = subset(val_set, args.val_subset, recipe.seed + 1)
        model_kwargs.update(num_classes=info.num_classes, in_chans=info.in_chans)
        model = create_model(args.model, pretrained=args.pretrained, **model_kwargs)
        run_info = {
            "dataset": args.dataset,
            "dataset_kind": info.name,
            "data_dir": info.root,
            "data": info.extra,
            "input_size": info.input_size,
            "train_images": len(train_set),
            "val_images": len(val_set) if val_set is not None else 0,
            "val_split": args.val_split,
            "seed": recipe.seed,
            "pretrained": args.pretrained,
            "command": _process_command(args),
            "zoo_command": "zoo train " + shlex.join(_argv_for(args)),
        }
        result = fit(
            model, train_set, val_set, recipe, out_dir, resume=out_dir if args.resume is not None else None,
            loggers=args.logger, device=device, deterministic=args.deterministic, label_names=info.classes,
            model_args=model_kwargs, run_info=run_info,
            logger_options={"visdom_server": args.visdom_server, "visdom_port": args.visdom_port,
                            "visdom_env": args.visdom_env},
        )  # fmt: skip
    if rank == 0 and result.status == "finished":
        best = f"{result.best_metric:.2f} % at epoch {result.best_epoch}" if result.best_metric is not None else "-"
        print(f"done: best val top-1 {best}; run folder {out_dir}")
    return 130 if result.status == "interrupted" else 0


def _argv_for(args: argparse.Namespace) -> list[str]:
    # zoo.cli.main records the words after `train`; a caller that built the Namespace itself has sys.argv.
    if getattr(args, "argv", None) is not None:
        return list(args.argv)
    argv = sys.argv[1:]
    return argv[1:] if argv and argv[0] == "train" else argv


def _process_command(args: argparse.Namespace) -> str:
    """The command line as typed (torchrun, python -m zoo train ...) when this process is that command."""
    argv = _argv_for(args)
    process = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    if not argv or process[-len(argv) :] == argv:
        return shlex.join(process)
    return "zoo train " + shlex.join(argv)


def _output_dir(args: argparse.Namespace, dataset_kind: str | None) -> Path:
    if args.output:
        return Path(args.output)
    if args.resume:
        p = Path(args.resume)
        return p.parent if p.is_file() else p
    if args.resume is not None:
        raise ValueError("--resume without a path needs --output RUN_FOLDER")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{args.model.replace('.', '_')}-{dataset_kind}-{stamp}"


def _saved_recipe(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    run = out_dir / "run.json"
    if run.is_file():
        return json.loads(run.read_text()).get("recipe")
    return None
