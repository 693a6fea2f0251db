"""Training recipes: named, printable sets of hyper-parameters that command-line options override.

The ``seed-*`` recipes are the seed course's labs as written; ``fast`` is a modern recipe tuned for short runs, with
values per dataset kind (``get_recipe("fast", "cifar10")``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import RecipeError, RunError
from zoo.utils.checks import Invalid, int_in, number_in, one_of, record, reported, text

# Recipe fields a resumed run may change: they decide how long it runs and how fast, not what it computes.
RESUME_MAY_CHANGE = ("epochs", "workers", "eval_batch_size")


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
        with reported("recipe", RecipeError, hint="`zoo train --print-recipe` shows every setting of a recipe"):
            text("name", self.name, 200)
            text("description", self.description)
            int_in("epochs", self.epochs, 1)
            int_in("batch_size", self.batch_size, 1)
            text("opt", self.opt, 100)
            self.lr = float(number_in("lr", self.lr, 0))
            self.momentum = float(number_in("momentum", self.momentum, 0, below=1))
            self.weight_decay = float(number_in("weight_decay", self.weight_decay, 0))
            one_of("filter_bias_and_bn", self.filter_bias_and_bn, (True, False))
            text("sched", self.sched, 100)
            one_of("sched_on_updates", self.sched_on_updates, (True, False))
            self.decay_epochs = float(number_in("decay_epochs", self.decay_epochs, 0))
            self.decay_rate = float(number_in("decay_rate", self.decay_rate, 0))
            self.warmup_epochs = float(number_in("warmup_epochs", self.warmup_epochs, 0))
            self.warmup_lr = float(number_in("warmup_lr", self.warmup_lr, 0))
            self.min_lr = float(number_in("min_lr", self.min_lr, 0))
            self.label_smoothing = float(number_in("label_smoothing", self.label_smoothing, 0, below=1))
            self.mixup = float(number_in("mixup", self.mixup, 0))
            self.cutmix = float(number_in("cutmix", self.cutmix, 0))
            self.mixup_prob = float(number_in("mixup_prob", self.mixup_prob, 0, 1))
            one_of("ema", self.ema, (True, False))
            self.ema_decay = float(number_in("ema_decay", self.ema_decay, 0, below=1))
            self.grad_clip = float(number_in("grad_clip", self.grad_clip, 0))
            int_in("crop_pad", self.crop_pad, 0)
            self.hflip = float(number_in("hflip", self.hflip, 0, 1))
            text("rand_augment", self.rand_augment, 200)
            one_of("amp", self.amp, (True, False))
            one_of("channels_last", self.channels_last, (True, False))
            int_in("workers", self.workers, 0)
            int_in("eval_batch_size", self.eval_batch_size, 1)
            int_in("seed", self.seed)
            one_of("eval_model", self.eval_model, ("ema", "model"))
            if not isinstance(self.notes, list) or not all(isinstance(n, str) for n in self.notes):
                raise Invalid("notes", self.notes, "must be a list of strings")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied; an unknown field or a wrong value is a RecipeError naming it."""
        return record(Recipe, {**self.to_dict(), **changes}, "recipe", RecipeError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The seed labs ran in float32 and decayed every parameter; channels_last only changes speed, so it stays on.
_SEED = {"amp": False, "filter_bias_and_bn": False, "eval_model": "model"}

# name -> (base values, {dataset kind -> values that differ for it})
RECIPES: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {
    "seed-mnist": (
        dict(
            description="Lab10-2: Adam 1e-3, batch 100, 15 epochs, no schedule or augmentation",
            epochs=15,
            batch_size=100,
            opt="adam",
            lr=1e-3,
            **_SEED,
        ),
        {},
    ),
    "seed-vgg-cifar": (
        dict(
            description="Lab10-5: SGD 0.005 momentum 0.9, StepLR(5, 0.9), batch 512, 50 epochs",
            epochs=50,
            batch_size=512,
            opt="momentum",
            lr=0.005,
            momentum=0.9,
            sched="step",
            decay_epochs=5,
            decay_rate=0.9,
            **_SEED,
        ),
        {},
    ),
    "seed-resnet-cifar": (
        dict(
            description="Lab10-6: SGD 0.1 momentum 0.9 wd 5e-4, StepLR(10, 0.5), batch 256, random crop",
            epochs=150,
            batch_size=256,
            opt="momentum",
            lr=0.1,
            momentum=0.9,
            weight_decay=5e-4,
            sched="step",
            decay_epochs=10,
            decay_rate=0.5,
            crop_pad=4,
            **_SEED,
        ),
        {},
    ),
    "fast": (
        dict(
            description="cosine with warm-up per batch, label smoothing, EMA, augmentation fitted to the dataset",
            sched="cosine",
            sched_on_updates=True,
            label_smoothing=0.1,
            ema=True,
        ),
        {
            # Tuned on this project's 2-core CPU: >= 99.2 % MNIST test accuracy inside 90 s (benchmarks/).
            # Over 4 seeds: +-1 px shifts beat +-2 px and none, lr 5e-3 beat 3e-3 (final 99.25-99.32 %).
            "mnist": dict(
                epochs=4,
                batch_size=128,
                opt="adamw",
                lr=5e-3,
                weight_decay=0.01,
                warmup_epochs=0.3,
                warmup_lr=1e-4,
                min_lr=1e-5,
                crop_pad=1,
                ema_decay=0.998,
            ),
            "fashion_mnist": dict(
                epochs=10,
                batch_size=128,
                opt="adamw",
                lr=3e-3,
                weight_decay=0.05,
                warmup_epochs=0.5,
                warmup_lr=1e-4,
                min_lr=1e-5,
                crop_pad=2,
                hflip=0.5,
                ema_decay=0.998,
            ),
            "cifar10": dict(
                epochs=30,
                batch_size=256,
                opt="sgd",
                lr=0.2,
                momentum=0.9,
                weight_decay=5e-4,
                warmup_epochs=1,
                warmup_lr=0.01,
                crop_pad=4,
                hflip=0.5,
                rand_augment="rand-m5-n2-mstd0.5",
                ema_decay=0.999,
            ),
            "imagefolder": dict(
                epochs=30,
                batch_size=64,
                opt="adamw",
                lr=1e-3,
                weight_decay=0.05,
                warmup_epochs=2,
                hflip=0.5,
                rand_augment="rand-m9-mstd0.5-inc1",
                mixup=0.2,
                cutmix=1.0,
                mixup_prob=0.5,
                ema_decay=0.998,
            ),
        },
    ),
}
RECIPES["fast"][1]["cifar100"] = {**RECIPES["fast"][1]["cifar10"], "epochs": 40}


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


def fit_recipe_to_data(recipe: Recipe, train_images: int, explicit: Collection[str] = ()) -> Recipe:
    """``recipe`` scaled to a small training set, each change said in ``notes``; fields in ``explicit`` (set by
    the user) are left as they are.

    A recipe tuned for 30 epochs of thousands of images fails on a few hundred: so at least
    ``MIN_STEPS_PER_EPOCH`` steps an epoch (a smaller batch, not below 8), warm-up at most a tenth of the run, an
    EMA horizon at most a fifth of it (none under 50 steps), and no mixup/CutMix under ``MIN_STEPS_FOR_MIXUP`` steps.
    """
    changes: dict[str, Any] = {}
    notes = list(recipe.notes)
    batch = recipe.batch_size
    if "batch_size" not in explicit and train_images // batch < MIN_STEPS_PER_EPOCH and batch > 8:
        fitted = max(8, 2 ** max(3, (train_images // MIN_STEPS_PER_EPOCH).bit_length() - 1))
        if fitted < batch:
            changes["batch_size"] = fitted
            # Counted as the run will count them (the last, smaller batch is a step too: see `steps`).
            notes.append(
                f"batch {batch} -> {fitted}: {train_images} images give {-(-train_images // fitted)} steps an epoch"
            )
    steps = max(1, -(-train_images // changes.get("batch_size", batch))) * recipe.epochs
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
    return recipe if isinstance(recipe, Recipe) else get_recipe(recipe or "fast", dataset_kind)


def format_recipe(recipe: Recipe) -> str:
    """``key: value`` lines, in field order, for ``--print-recipe``."""
    d = recipe.to_dict()
    width = max(map(len, d))
    lines = [f"{k:<{width}}  {v if v != '' else repr(v)}" for k, v in d.items() if k != "notes"]
    lines += [f"# {n}" for n in recipe.notes]
    return "\n".join(lines)


def read_recipe(data: Any, where: str, hint: str | None = None) -> Recipe:
    """The recipe a run recorded (in run.json or last.pt); a wrong value is a RunError naming ``where``."""
    try:
        return record(Recipe, data, f"{where}: recipe", RunError)
    except RecipeError as e:
        raise RunError(f"{where}: {e.args[0]}", hint=hint) from None
    except RunError as e:
        e.hint = e.hint or hint
        raise


def resume_recipe(saved: Recipe, given: Recipe, explicit: Collection[str] | None = None) -> Recipe:
    """The recipe a resumed run continues under: the run's own, with ``given``'s values of RESUME_MAY_CHANGE.

    ``explicit`` names the fields the caller set (default: every setting); one of them that differs from the run's
    and may not change is a RunError naming it and both values: half-way, it would make a run no recipe describes.
    """
    settings = [f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "description", "notes")]
    compared = [k for k in (settings if explicit is None else explicit) if k not in RESUME_MAY_CHANGE]
    changed = [
        f"{k}={getattr(given, k)!r} (the run's: {getattr(saved, k)!r})"
        for k in compared
        if getattr(given, k) != getattr(saved, k)
    ]
    if changed:
        raise RunError(
            f"a resumed run keeps its recipe, but {', '.join(changed)} differ",
            hint="only epochs, workers and eval_batch_size may change; to train with other settings, start a new "
            "run in another folder (fine-tuning from this run's best.safetensors)",
        )
    return saved.replace(**{k: getattr(given, k) for k in RESUME_MAY_CHANGE if explicit is None or k in explicit})
