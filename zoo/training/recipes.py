"""Training recipes: named, printable sets of hyper-parameters that command-line options override.

The ``seed-*`` recipes are the seed course's labs as they were written; ``fast`` is a modern recipe (AdamW
or SGD-Nesterov, cosine schedule with warm-up, label smoothing, EMA, augmentation that fits the dataset)
tuned for short runs. A recipe can differ per dataset kind: ``get_recipe("fast", "cifar10")`` resolves it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import RecipeError

__all__ = [
    "RECIPES", "Recipe", "fit_recipe_to_data", "format_recipe", "get_recipe", "list_recipes", "resolve_recipe",
]  # fmt: skip


@dataclass
class Recipe:
    """Every hyper-parameter of a training run. Names follow timm's train script where one exists."""

    name: str = "custom"
    description: str = ""
    epochs: int = 10
    batch_size: int = 128  # global: split across processes under torchrun
    # optimiser (timm.optim.create_optimizer_v2 names: adam, adamw, momentum = SGD, sgd = SGD-Nesterov ...)
    opt: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    filter_bias_and_bn: bool = True  # no weight decay on biases and norm layers
    # schedule (timm.scheduler.create_scheduler_v2 names: cosine, step, constant, none ...)
    sched: str = "none"
    sched_on_updates: bool = False  # step the schedule every batch rather than every epoch
    decay_epochs: float = 0.0
    decay_rate: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    # regularisation
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    grad_clip: float = 0.0
    # augmentation: translation/crop padding in pixels, flip probability, timm RandAugment string
    crop_pad: int = 0
    hflip: float = 0.0
    rand_augment: str = ""
    # speed: amp is float16 autocast on CUDA, bfloat16 on a CPU with native bf16 (AVX512-BF16/AMX), off elsewhere;
    # evaluation stays float32 on the CPU. channels_last where it is faster: CUDA, and CPU convolutions
    amp: bool = True
    channels_last: bool = True
    workers: int = 2
    eval_batch_size: int = 1000
    seed: int = 42
    # which weights val metrics, best.safetensors and the final model use when ema is on: "ema" or "model"
    eval_model: str = "ema"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, (low, high, closed) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecipeError(f"{name}={value!r}: must be a number", hint=f"give {_range_text(low, high, closed)}")
            # NaN fails every comparison and inf has no upper bound to fail, so both would pass the range
            # check below and reach the optimiser, the loss or run.json; no setting means anything at either.
            if not math.isfinite(value):
                raise RecipeError(f"{name}={value}: not a finite number", hint=f"give {_range_text(low, high, closed)}")
            if value < low or (high is not None and (value > high if closed else value >= high)):
                raise RecipeError(f"{name}={value}: out of range", hint=f"give {_range_text(low, high, closed)}")
        if self.eval_model not in ("ema", "model"):
            raise RecipeError(f"eval_model={self.eval_model!r}: unknown", hint="give ema or model")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied; unknown names are a RecipeError that lists the fields."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise RecipeError(f"unknown recipe field(s) {', '.join(unknown)}; fields are: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# field -> (lowest, highest or None, whether the highest is allowed): the values each numeric setting can take.
_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "lr": (0.0, None, True), "momentum": (0.0, 1.0, False), "weight_decay": (0.0, None, True),
    "decay_epochs": (0.0, None, True), "decay_rate": (0.0, None, True), "warmup_epochs": (0.0, None, True),
    "warmup_lr": (0.0, None, True), "min_lr": (0.0, None, True), "label_smoothing": (0.0, 1.0, False),
    "mixup": (0.0, None, True), "cutmix": (0.0, None, True), "mixup_prob": (0.0, 1.0, True),
    "ema_decay": (0.0, 1.0, False), "grad_clip": (0.0, None, True), "crop_pad": (0, None, True),
    "hflip": (0.0, 1.0, True), "workers": (0, None, True), "eval_batch_size": (1, None, True),
}  # fmt: skip


def _range_text(low: float, high: float | None, closed: bool) -> str:
    if high is None:
        return f"a finite number of at least {low:g}"
    return f"a number from {low:g} to {high:g}" if closed else f"a number from {low:g} up to, not including, {high:g}"


# The seed labs ran in float32 and decayed every parameter; channels_last only changes speed, so it stays on.
_SEED = {"amp": False, "filter_bias_and_bn": False, "eval_model": "model"}

# name -> (base values, {dataset kind -> values that differ for it})
RECIPES: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {
    "seed-mnist": (
        dict(description="Lab10-2: Adam 1e-3, batch 100, 15 epochs, no schedule or augmentation",
             epochs=15, batch_size=100, opt="adam", lr=1e-3, **_SEED),
        {},
    ),
    "seed-vgg-cifar": (
        dict(description="Lab10-5: SGD 0.005 momentum 0.9, StepLR(5, 0.9), batch 512, 50 epochs",
             epochs=50, batch_size=512, opt="momentum", lr=0.005, momentum=0.9, sched="step", decay_epochs=5,
             decay_rate=0.9, **_SEED),
        {},
    ),
    "seed-resnet-cifar": (
        dict(description="Lab10-6: SGD 0.1 momentum 0.9 wd 5e-4, StepLR(10, 0.5), batch 256, random crop",
             epochs=150, batch_size=256, opt="momentum", lr=0.1, momentum=0.9, weight_decay=5e-4, sched="step",
             decay_epochs=10, decay_rate=0.5, crop_pad=4, **_SEED),
        {},
    ),
    "fast": (
        dict(description="cosine with warm-up per batch, label smoothing, EMA, augmentation fitted to the dataset",
             sched="cosine", sched_on_updates=True, label_smoothing=0.1, ema=True),
        {
            # Tuned on this project's 2-core CPU: >= 99.2 % MNIST test accuracy inside 90 s (benchmarks/).
            # Over 4 seeds: +-1 px shifts beat +-2 px and none, lr 5e-3 beat 3e-3 (final 99.25-99.32 %).
            "mnist": dict(epochs=4, batch_size=128, opt="adamw", lr=5e-3, weight_decay=0.01, warmup_epochs=0.3,
                          warmup_lr=1e-4, min_lr=1e-5, crop_pad=1, ema_decay=0.998),
            "fashion_mnist": dict(epochs=10, batch_size=128, opt="adamw", lr=3e-3, weight_decay=0.05,
                                  warmup_epochs=0.5, warmup_lr=1e-4, min_lr=1e-5, crop_pad=2, hflip=0.5,
                                  ema_decay=0.998),
            "cifar10": dict(epochs=30, batch_size=256, opt="sgd", lr=0.2, momentum=0.9, weight_decay=5e-4,
                            warmup_epochs=1, warmup_lr=0.01, crop_pad=4, hflip=0.5, rand_augment="rand-m5-n2-mstd0.5",
                            ema_decay=0.999),
            "cifar100": dict(epochs=40, batch_size=256, opt="sgd", lr=0.2, momentum=0.9, weight_decay=5e-4,
                             warmup_epochs=1, warmup_lr=0.01, crop_pad=4, hflip=0.5,
                             rand_augment="rand-m5-n2-mstd0.5", ema_decay=0.999),
            "imagefolder": dict(epochs=30, batch_size=64, opt="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=2,
                                hflip=0.5, rand_augment="rand-m9-mstd0.5-inc1", mixup=0.2, cutmix=1.0,
                                mixup_prob=0.5, ema_decay=0.998),
        },
    ),
}  # fmt: skip


def list_recipes() -> list[str]:
    """The names of the built-in recipes."""
    return list(RECIPES)


def get_recipe(name: str, dataset: str | None = None, **overrides: Any) -> Recipe:
    """The recipe ``name`` resolved for a dataset kind (``mnist``, ``cifar10``, ``imagefolder`` ...), with overrides.

    Values a recipe gives for other dataset kinds only are ignored; a recipe without values for this
    kind falls back to its base values (``fast`` then uses ``mnist``'s for unknown kinds).
    """
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    base, per_dataset = RECIPES[name]
    values: dict[str, Any] = {"name": name, **base}
    if per_dataset:
        kind = dataset if dataset in per_dataset else next(iter(per_dataset))
        values.update(per_dataset[kind])
        if dataset not in per_dataset:
            said = f"no {name} settings for {dataset}" if dataset else "no dataset kind was given"
            values["notes"] = [f"{said}; using the {name} recipe's settings for {kind}"]
            if not dataset:  # zoo.fit(model, data) without one: say so rather than train with MNIST's settings
                warnings.warn(
                    f"{values['notes'][0]} (pass run_info={{'dataset_kind': ...}} to zoo.fit, or a Recipe)",
                    stacklevel=3,
                )
    return Recipe().replace(**values).replace(**overrides)


# Below these, a recipe made for tens of thousands of images (image folders: 30 epochs, batch 64) is scaled down.
MIN_STEPS_PER_EPOCH = 10
MIN_STEPS_FOR_MIXUP = 1000


def fit_recipe_to_data(recipe: Recipe, train_images: int, explicit: set[str] | frozenset[str] = frozenset()) -> Recipe:
    """``recipe`` scaled to a small training set, each change said in ``notes``; fields in ``explicit`` (set on
    the command line) are left as they are.

    A recipe tuned for thousands of images and 30 epochs does not work on a few hundred for a few epochs:
    a batch of 64 gives three steps an epoch, a 2-epoch warm-up never reaches the learning rate, an EMA with
    a horizon of 500 steps still averages the random start, and mixup/CutMix keep the model from fitting at
    all. So: at least ``MIN_STEPS_PER_EPOCH`` steps an epoch (a smaller batch, not below 8), warm-up at most a
    tenth of the run, an EMA horizon at most a fifth of it (none under 50 steps), and no mixup/CutMix under
    ``MIN_STEPS_FOR_MIXUP`` steps.
    """
    changes: dict[str, Any] = {}
    notes = list(recipe.notes)
    batch = recipe.batch_size
    if "batch_size" not in explicit and train_images // batch < MIN_STEPS_PER_EPOCH and batch > 8:
        fitted = max(8, 2 ** max(3, (train_images // MIN_STEPS_PER_EPOCH).bit_length() - 1))
        if fitted < batch:
            changes["batch_size"] = batch = fitted
            # Counted as the run will count them (the last, smaller batch is a step too: see `steps`).
            notes.append(f"batch {recipe.batch_size} -> {fitted}: {train_images} images give "
                         f"{-(-train_images // fitted)} steps an epoch")  # fmt: skip
    steps = max(1, -(-train_images // batch)) * recipe.epochs
    if "warmup_epochs" not in explicit and recipe.warmup_epochs > 0.1 * recipe.epochs:
        changes["warmup_epochs"] = round(0.1 * recipe.epochs, 3)
        notes.append(f"warm-up {recipe.warmup_epochs} -> {changes['warmup_epochs']} epochs (a tenth of the run)")
    if recipe.ema and not {"ema", "ema_decay"} & set(explicit):
        if steps < 50:
            changes["ema"] = False
            notes.append(f"no EMA: {steps} steps are too few to average")
        elif 1.0 / (1.0 - recipe.ema_decay) > steps / 5:
            changes["ema_decay"] = round(1.0 - 5.0 / steps, 4)
            horizon = f"a horizon of a fifth of {steps} steps"
            notes.append(f"EMA decay {recipe.ema_decay} -> {changes['ema_decay']} ({horizon})")
    if (recipe.mixup or recipe.cutmix) and steps < MIN_STEPS_FOR_MIXUP and not {"mixup", "cutmix"} & set(explicit):
        changes.update(mixup=0.0, cutmix=0.0)
        notes.append(f"no mixup/CutMix: {steps} steps are too few for them to pay")
    return recipe.replace(**changes, notes=notes) if changes else recipe


def resolve_recipe(recipe: Recipe | str | None, dataset_kind: str | None) -> Recipe:
    """A :class:`Recipe` as given, a recipe name resolved for ``dataset_kind``, or None: the ``fast`` recipe."""
    if recipe is None:
        return get_recipe("fast", dataset_kind)
    if isinstance(recipe, str):
        return get_recipe(recipe, dataset_kind)
    return recipe


def format_recipe(recipe: Recipe) -> str:
    """``key: value`` lines, in field order, for ``--print-recipe``."""
    d = recipe.to_dict()
    width = max(map(len, d))
    lines = [f"{k:<{width}}  {v if v != '' else repr(v)}" for k, v in d.items() if k != "notes"]
    lines += [f"# {n}" for n in recipe.notes]
    return "\n".join(lines)
