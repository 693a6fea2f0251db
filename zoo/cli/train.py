"""``zoo train``: train a model on MNIST, Fashion-MNIST, CIFAR or an image folder (:func:`zoo.training.train`).

``torchrun --nproc-per-node N -m zoo train ...`` runs the same command under DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from zoo.cli import options_for
from zoo.errors import ArgumentValueError
from zoo.utils import set_threads


def recipe_options() -> dict[str, type]:
    """Recipe field -> its type, for every setting an option overrides (``name``, ``description``, ``notes`` are
    descriptions, not settings)."""
    from zoo.training.recipes import Recipe

    hints = typing.get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in dataclasses.fields(Recipe) if f.name not in ("name", "description", "notes")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo train``."""
    from zoo.training.recipes import list_recipes

    parser.add_argument("model", nargs="?", help="model name (arch, or arch.tag with --pretrained)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, cifar100, imagefolder (or imagefolder:PATH)")
    data.add_argument(
        "--data-dir",
        help="the dataset's folder, or a .tar.gz of an image folder (extracted into zoo's "
        "data cache once); see docs/training.md for the layouts",
    )
    data.add_argument(
        "--val-split",
        type=float,
        help="hold out this fraction of the training images to choose the kept epoch (default: 0.1 "
        "for an image folder without val/ or test/; otherwise none, and the last epoch is kept). "
        "A test split is only reported, never used to choose",
    )
    data.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    data.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out unreadable images (listed on stderr) instead of failing",
    )
    data.add_argument("--train-subset", type=int, help="train on a seeded random subset of this many images")
    data.add_argument("--val-subset", type=int, help="validate and test on seeded random subsets of this many images")

    rec = parser.add_argument_group("recipe (any option below overrides the recipe's value)")
    rec.add_argument("--recipe", help=f"one of {', '.join(list_recipes())} (default fast)")
    rec.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    for name, typ in recipe_options().items():
        option = f"--{name.replace('_', '-')}"
        if typ is bool:
            rec.add_argument(option, action=argparse.BooleanOptionalAction, default=None)
        else:
            rec.add_argument(option, type=typ, default=None, metavar=typ.__name__.upper())
    rec.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="set any recipe field")

    mdl = parser.add_argument_group("model")
    mdl.add_argument("--pretrained", action="store_true", help="start from the model's published weights")
    mdl.add_argument(
        "--initial-checkpoint",
        metavar="FILE",
        help="start from these weights (a safetensors file, e.g. a run's best.safetensors); a new "
        "class count adapts the classifier",
    )
    mdl.add_argument("--stem", choices=("imagenet", "cifar"), help="ResNet/VGG stem (cifar for 32x32 inputs)")
    mdl.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE", help="builder keyword argument")

    run = parser.add_argument_group("run")
    run.add_argument("--output", help="run folder (default runs/<model>-<dataset>-<time>)")
    run.add_argument("--resume", nargs="?", const="", help="continue the run in --output, or in this folder/last.pt")
    run.add_argument(
        "--logger",
        action="append",
        default=[],
        choices=("tensorboard", "visdom"),
        help="extra live logger (repeatable); metrics.csv and curves.png are always written",
    )
    run.add_argument("--visdom-server", default="http://localhost")
    run.add_argument("--visdom-port", type=int, default=8097)
    run.add_argument("--visdom-env", help="Visdom environment (default: the run folder's name)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda")
    run.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deterministic algorithms (default: on for CPU)",
    )
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _key_values(items: list[str], what: str, types: dict[str, type] | None = None) -> dict[str, Any]:
    """NAME=VALUE words, each value parsed as ``types`` types its name (see :func:`_parse`)."""
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise ArgumentValueError(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = _parse(text.strip(), (types or {}).get(key))
    return out


def _parse(text: str, typ: type | None = None) -> Any:
    """``text`` as ``typ`` (without one: an int, a float, true/false); as it is when it is none of them, for the
    recipe's check to name."""
    if typ is bool or (typ is None and text.lower() in ("true", "false")):
        return {"true": True, "false": False}.get(text.lower(), text)
    for cast in [typ] if typ is not None else [int, float]:
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(args: argparse.Namespace) -> int:
    """Run ``zoo train``."""
    from zoo.data import parse_dataset
    from zoo.training import train
    from zoo.training.recipes import format_recipe, get_recipe

    types = recipe_options()  # the recipe fields set on the command line: options and --set
    options = {k: getattr(args, k) for k in types if getattr(args, k, None) is not None}
    settings = {**_key_values(args.set, "--set", types), **options}
    if args.print_recipe:
        kind = parse_dataset(args.dataset, args.data_dir or ".")[0] if args.dataset else None
        recipe = get_recipe(args.recipe or "fast", kind).replace(**settings)
        print(f"# recipe {recipe.name}" + (f" for {kind}" if kind else ""))
        print(format_recipe(recipe))
        return 0
    if not args.model:
        raise ArgumentValueError("name the model to train, e.g. `zoo train mnist_cnn --dataset mnist --data-dir DATA`")
    if not args.dataset:
        raise ArgumentValueError("--dataset is required (mnist, fashion_mnist, cifar10, cifar100, imagefolder:PATH)")
    set_threads(args.threads)
    model_args = _key_values(args.model_arg, "--model-arg")
    if args.stem:
        model_args["stem"] = args.stem
    args.resume = True if args.resume == "" else args.resume  # `--resume` alone: the run in --output
    given = options_for(train, args)
    visdom = {k: getattr(args, k) for k in ("visdom_server", "visdom_port", "visdom_env")}
    result = train(**given, settings=settings, model_args=model_args, loggers=args.logger, logger_options=visdom)
    # Stopped by a signal: exit as a shell reports it, 128 + its number (130 Ctrl-C, 143 SIGTERM).
    return 128 + (result.stopped_by or 2) if result.status == "interrupted" else 0
