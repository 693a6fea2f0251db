"""The files that describe published weights: timm's ``config.json`` and the model card (``README.md``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from zoo.publish.checks import Check
from zoo.registry import split_model_name_tag
from zoo.runs import RunConfig, RunRecord

WEIGHTS_FILE = "model.safetensors"

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


def usage_text(name: str, arch: str, repo_id: str | None, tv_ok: bool, timm_ok: bool, in_chans: int) -> str:
    repo = repo_id or f"ORG/{name}"
    mode = "L" if in_chans == 1 else "RGB"
    blocks = [
        "```python\nimport zoo\nfrom PIL import Image\n\n"
        f'model = zoo.create_model("{name}", pretrained=True).eval()\n'
        "transform = zoo.create_transform(model.pretrained_cfg)\n"
        f'probs = model(transform(Image.open("image.png").convert("{mode}")).unsqueeze(0)).softmax(1)\n```',
        f"Shell: `zoo predict {name} image.png`\n\n"
        f'With torch.hub: `torch.hub.load("PATH/TO/zoo", "{arch}", source="local", pretrained=True)` '
        f'(add the tag through `zoo.create_model("{name}", ...)`).',
    ]
    if tv_ok:
        blocks.append(
            "With torchvision (same layout, no conversion):\n\n```python\nimport torchvision\n"
            "from safetensors.torch import load_file\n\n"
            f"model = torchvision.models.{arch}(num_classes=NUM_CLASSES)\n"
            f'model.load_state_dict(load_file("{WEIGHTS_FILE}"))\n```'
        )
    if timm_ok:
        blocks.append(
            f'With timm: `timm.create_model("hf-hub:{repo}", pretrained=True)`, or from a local copy of this folder '
            '`timm.create_model("local-dir:PATH", pretrained=True)`.'
        )
    return "\n\n".join(blocks)


def model_card(
    name: str,
    model: nn.Module,
    config: RunConfig,
    run: RunRecord,
    train_seconds: float | None,
    results: dict[str, Any],
    info: Any,
    checks: list[Check],
    license_id: str,
    repo_id: str | None,
    eval_command: str,
    extra_files: list[str],
) -> str:
    """The model card (README.md): what the weights are, how to use them, their evaluation, training and checks."""
    arch, tag = split_model_name_tag(name)
    kind = info.name
    hub_dataset, display, data_licence = DATASET_CARDS.get(kind, (None, kind, "see the dataset"))
    tv_ok = any(c.name == "torchvision layout" and c.passed for c in checks)
    timm_ok = timm_has(arch) and config.model_args.get("stem", "imagenet") == "imagenet"
    params = sum(p.numel() for p in model.parameters())
    recipe = run.recipe or {}
    recipe_rows = "\n".join(f"| {k} | {v} |" for k, v in recipe.items() if k not in ("notes", "description"))
    per_class = "\n".join(
        f"| {label} | {'-' if acc is None else f'{acc:.2f} %'} |"
        for label, acc in zip(results["label_names"], results["per_class_acc"], strict=True)
    )
    cfg = model.pretrained_cfg
    body = [
        f"# {name}",
        "",
        f"The zoo model `{arch}` trained on {display} ({cfg['input_size'][0]}x"
        f"{cfg['input_size'][1]}x{cfg['input_size'][2]} inputs, {model.num_classes} classes, "
        f"{params:,} parameters). Data licence: {data_licence}.",
        "",
        "## Use",
        "",
        usage_text(name, arch, repo_id, tv_ok, timm_ok, cfg["input_size"][0]),
        "",
        "## Evaluation",
        "",
        f"Measured on the {display} test set ({results['count']:,} images) from the exported `{WEIGHTS_FILE}`:",
        "",
        "| metric | value |",
        "|---|---|",
        f"| top-1 | {results['acc1']:.2f} % |",
        f"| top-5 | {results['acc5']:.2f} % |",
        f"| loss | {results['loss']:.4f} |",
        "",
        f"Reproduce: `{eval_command}`",
        "",
        "| class | accuracy |",
        "|---|---|",
        per_class,
        "",
        *(["![confusion matrix](confusion.png)", ""] if "confusion.png" in extra_files else []),
        "## Training",
        "",
        f"Command: `{run.zoo_command or run.command or 'unknown'}`",
        "",
        f"Kept epoch {run.best_epoch} of {run.epochs_done} ({_selection(run)}); "
        + (f"{train_seconds:.0f} s of training " if train_seconds else "")
        + f"on {run.device or 'cpu'}, torch {run.torch or torch.__version__}.",
        "",
        *(["![training curves](curves.png)", ""] if "curves.png" in extra_files else []),
        f"Recipe `{recipe.get('name', 'custom')}`: {recipe.get('description', '')}",
        "",
        "| setting | value |",
        "|---|---|",
        recipe_rows,
        "",
        "## Preprocessing",
        "",
        f"Resize to {cfg['input_size'][1]}x{cfg['input_size'][2]} ({cfg.get('interpolation', 'bilinear')}, "
        f"crop fraction {cfg.get('crop_pct', 1.0)}), scale to [0, 1], normalise with mean {tuple(cfg['mean'])} and "
        f"std {tuple(cfg['std'])}: `zoo.create_transform(model.pretrained_cfg)` does exactly this.",
        "",
        "## Checks made before publication",
        "",
        *[f"- {c.name}: {({True: 'passed', None: 'not applicable'})[c.passed]} ({c.detail})" for c in checks],
        "",
    ]
    # The Hub's metadata comes first, as YAML front matter: the test accuracies are its model-index results.
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    def accuracy(key: str, label: str) -> EvalResult:
        return EvalResult(
            task_type="image-classification",
            dataset_type=hub_dataset or kind,
            dataset_name=display,
            dataset_split="test",
            metric_type="accuracy",
            metric_value=round(results[key], 2),
            metric_name=label,
        )

    data = ModelCardData(
        license=license_id,
        library_name="zoo",
        pipeline_tag="image-classification",
        tags=["image-classification", "pytorch", "safetensors", *(["timm"] if timm_ok else [])],
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=["accuracy"],
        model_name=name,
        eval_results=[accuracy("acc1", "top-1 accuracy"), accuracy("acc5", "top-5 accuracy")],
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)))


def timm_has(arch: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return arch in timm.list_models(arch)


def _selection(run: RunRecord) -> str:
    """How the run chose the published epoch, in words; the test set never does."""
    if run.best_metric_name == "last_epoch":
        return "the last epoch"
    return "best top-1 on images held out of the training set" if run.test_images else "best validation top-1"
