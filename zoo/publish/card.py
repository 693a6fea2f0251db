"""The files that describe published weights: timm's ``config.json`` and the model card (``README.md``)."""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn as nn

from zoo.pretrained.manifest import WeightsEntry
from zoo.publish.checks import Check
from zoo.registry import split_model_name_tag
from zoo.runs import CHOSE_EPOCH, FLATTERS, PUBLISHED, RunRecord
from zoo.utils.scores import chance_warning, score_text, shows_top5

# What timm_config writes: a config.json with these keys, beside zoo's weights, is one zoo published.
CONFIG_KEYS = frozenset(
    {"architecture", "num_classes", "num_features", "global_pool", "label_names", "model_args", "pretrained_cfg"}
)

DATASET_CARDS = {
    # dataset kind -> (Hub dataset id, display name, licence of the data)
    "mnist": ("ylecun/mnist", "MNIST", "research use (Y. LeCun, C. Cortes, C. Burges)"),
    "fashion_mnist": ("zalando-datasets/fashion_mnist", "Fashion-MNIST", "MIT (Zalando SE)"),
    "cifar10": ("uoft-cs/cifar10", "CIFAR-10", "see the dataset's page"),
    "cifar100": ("uoft-cs/cifar100", "CIFAR-100", "see the dataset's page"),
}


def timm_config(model: nn.Module, arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """timm's config.json for ``model``, with the builder arguments of the run's ``config`` (config.json's content)."""
    cfg = model.pretrained_cfg
    pretrained_cfg = {
        "tag": cfg.get("tag"),
        "custom_load": False,
        "input_size": list(cfg["input_size"]),
        "fixed_input_size": bool(cfg.get("fixed_input_size", False)),
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_pct": cfg.get("crop_pct", 1.0),
        "crop_mode": cfg.get("crop_mode", "center"),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "num_classes": model.num_classes,
        "first_conv": cfg.get("first_conv"),
        "classifier": cfg.get("classifier"),
    }
    return {
        "architecture": arch,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        # timm >= 1.0's meanings: num_features counts the channels of forward_features' map.
        "global_pool": getattr(model, "global_pool", ""),
        "label_names": list(cfg.get("label_names") or []),
        "model_args": dict(config.get("model_args", {})),
        "pretrained_cfg": pretrained_cfg,
    }


def model_card(
    name: str,
    model: nn.Module,
    run: RunRecord,
    entry: WeightsEntry,
    results: dict[str, Any],
    checks: list[Check],
    repo_id: str | None,
    curves: bool,
) -> str:
    """The model card (README.md): what the weights are, how to use them, their evaluation, training and checks."""
    arch, tag = split_model_name_tag(name)
    kind, origin = entry.dataset or "", entry.origin or {}
    hub_dataset, display, data_licence = DATASET_CARDS.get(kind, (None, kind, "see the dataset"))
    torchvision_use = timm_use = ""
    if any(c.name == "torchvision layout" and c.passed for c in checks):
        torchvision_use = f"""

With torchvision (same layout, no conversion):

```python
import torchvision
from safetensors.torch import load_file

model = torchvision.models.{arch}(num_classes=NUM_CLASSES)
model.load_state_dict(load_file("{PUBLISHED}"))
```"""
    timm_ok = arch in timm.list_models(arch) and (entry.model_args or {}).get("stem", "imagenet") == "imagenet"
    if timm_ok:
        timm_use = f"""

With timm: `timm.create_model("hf-hub:{repo_id or f"ORG/{name}"}", pretrained=True)`, or from a local copy of this \
folder `timm.create_model("local-dir:PATH", pretrained=True)`."""
    params = sum(p.numel() for p in model.parameters())
    recipe = run.recipe or {}
    recipe_rows = "\n".join(f"| {k} | {v} |" for k, v in recipe.items() if k not in ("notes", "description"))
    per_class = "\n".join(
        f"| {label} | {'-' if acc is None else f'{acc:.2f} %'} |"
        for label, acc in zip(results["label_names"], results["per_class_acc"], strict=True)
    )
    cfg, curves_md = model.pretrained_cfg, "![training curves](curves.png)\n\n" if curves else ""
    (chans, h, w), seconds = cfg["input_size"], origin.get("train_seconds")
    done = {True: "passed", None: "not applicable"}
    check_lines = "".join(f"- {c.name}: {done[c.passed]} ({c.detail})\n" for c in checks)
    metrics, wide = entry.metrics or {}, shows_top5(model.num_classes)
    top5 = f"| top-5 | {results['acc5']:.2f} % |\n" if wide else ""
    chance = chance_warning(results["acc1"], results["count"], results["chance"], "The")
    chose = metrics["eval_set"] == CHOSE_EPOCH
    flatters = f" {FLATTERS.capitalize()}." if chose else ""
    # How the run chose the published epoch; the test set never does.
    held_out = "best top-1 on images held out of the training set" if run.test_images else "best validation top-1"
    selection = "the last epoch" if run.best_metric_name == "last_epoch" else held_out
    body = f"""# {name}

The zoo model `{arch}` trained on {display} ({chans}x{h}x{w} inputs, {model.num_classes} classes, \
{params:,} parameters). Data licence: {data_licence}.

## Use

```python
import zoo
from PIL import Image

model = zoo.create_model("{name}", pretrained=True).eval()
transform = zoo.create_transform(model.pretrained_cfg)
probs = model(transform(Image.open("image.png").convert("{"L" if chans == 1 else "RGB"}")).unsqueeze(0)).softmax(1)
```

Shell: `zoo predict {name} image.png`

With torch.hub: `torch.hub.load("PATH/TO/zoo", "{arch}", source="local", pretrained=True)` (add the tag through \
`zoo.create_model("{name}", ...)`).{torchvision_use}{timm_use}

## Evaluation

Measured on the {display} {metrics["eval_set"]} ({results["count"]:,} images) from the exported `{PUBLISHED}` \
(the interval is a 95 % Wilson interval).{flatters}{"".join(f" **{w}.**" for w in chance)}

| metric | value |
|---|---|
| top-1 | {score_text(results["acc1"], results["count"])} |
{top5}| loss | {results["loss"]:.4f} |

Reproduce: `{metrics["command"]}`

| class | accuracy |
|---|---|
{per_class}

![confusion matrix](confusion.png)

## Training

Command: `{origin.get("command") or "unknown"}`

Kept epoch {run.best_epoch} of {run.epochs_done} ({selection}); \
{f"{seconds:.0f} s of training " if seconds else ""}on {run.device or "cpu"}, torch {run.torch or torch.__version__}.

{curves_md}Recipe `{recipe.get("name", "custom")}`: {recipe.get("description", "")}

| setting | value |
|---|---|
{recipe_rows}

## Preprocessing

Resize to {h}x{w} ({cfg.get("interpolation", "bilinear")}, crop fraction {cfg.get("crop_pct", 1.0)}), scale to [0, 1], \
normalise with mean {tuple(cfg["mean"])} and std {tuple(cfg["std"])}: `zoo.create_transform(model.pretrained_cfg)` \
does exactly this.

## Checks made before publication

{check_lines}"""
    # The Hub's metadata comes first, as YAML front matter: the test accuracies are its model-index results.
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    accuracies = [
        EvalResult(
            task_type="image-classification",
            dataset_type=hub_dataset or kind,
            dataset_name=display,
            dataset_split="validation" if chose else "test",
            metric_type="accuracy",
            metric_value=round(results[key], 2),
            metric_name=label,
        )
        for key, label in (("acc1", "top-1 accuracy"), ("acc5", "top-5 accuracy"))[: 1 + wide]
    ]
    data = ModelCardData(
        license=entry.license,
        library_name="zoo",
        pipeline_tag="image-classification",
        tags=["image-classification", "pytorch", "safetensors", *(["timm"] if timm_ok else [])],
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=["accuracy"],
        model_name=name,
        eval_results=accuracies,
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))
