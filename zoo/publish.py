"""``zoo publish``: turn a finished training run into a verified model folder ready for the Hugging Face Hub.

    zoo publish runs/mnist_cnn-fast --name mnist_cnn.mnist --out hub/mnist_cnn.mnist --bundle
    zoo publish runs/resnet20-fmnist --name resnet20.fashion_mnist --repo-id ORG/resnet20.fashion_mnist --push

The folder holds ``model.safetensors`` (with the architecture, tag, classes and preprocessing in its
metadata), ``config.json`` in timm's layout, a ``README.md`` model card, the training curves and the
confusion matrix of a fresh evaluation. Before anything is written, three checks must pass:

1. the safetensors round trip gives back every tensor of the checkpoint, bit for bit;
2. where torchvision builds the same architecture, its model loads the file and gives the same outputs;
3. a fresh evaluation of the exported file reproduces the run's recorded top-1 within ``tolerance`` points.

A failed check writes nothing and says which check failed and by how much. The manifest entry
(SHA-256, size, metrics and the commands behind them) is written last, after the folder is in place.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.files import atomic_path
from zoo.registry import is_model, split_model_name_tag

__all__ = ["PublishError", "PublishResult", "publish"]

DATASET_CARDS = {
    # dataset kind -> (Hub dataset id, display name, licence of the data)
    "mnist": ("ylecun/mnist", "MNIST", "research use (Y. LeCun, C. Cortes, C. Burges)"),
    "fashion_mnist": ("zalando-datasets/fashion_mnist", "Fashion-MNIST", "MIT (Zalando SE)"),
    "cifar10": ("uoft-cs/cifar10", "CIFAR-10", "see the dataset's page"),
    "cifar100": ("uoft-cs/cifar100", "CIFAR-100", "see the dataset's page"),
}
WEIGHTS_FILE = "model.safetensors"


class PublishError(RuntimeError):
    """A check failed or the inputs are unusable; nothing was written."""


@dataclass
class Check:
    """One pre-publication check and its outcome."""

    name: str
    passed: bool | None  # None: not applicable (skipped), with the reason in detail
    detail: str

    def line(self) -> str:
        state = {True: "passed", False: "FAILED", None: "skipped"}[self.passed]
        return f"  {self.name:<22} {state:<8} {self.detail}"


@dataclass
class PublishResult:
    """What ``publish`` produced."""

    name: str
    out_dir: Path | None
    sha256: str
    size: int
    metrics: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    manifest_entry: dict[str, Any] | None = None
    commit_url: str | None = None


# ---------------------------------------------------------------------------------------------- inputs


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise PublishError(f"{path.parent} has no {path.name}: {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise PublishError(f"{path} is not valid JSON ({e})") from None


def _load_run(run_dir: Path, checkpoint: Path | None) -> tuple[dict[str, Any], dict[str, Any], Path]:
    if not run_dir.is_dir():
        raise PublishError(f"run folder {run_dir} does not exist (give the --output folder of `zoo train`)")
    config = _read_json(run_dir / "config.json", "it is not a finished `zoo train` run folder")
    run = _read_json(run_dir / "run.json", "it is not a `zoo train` run folder")
    ckpt = checkpoint or run_dir / config.get("weights", "best.safetensors")
    if not ckpt.is_file():
        raise PublishError(
            f"no checkpoint to publish: {ckpt} does not exist (`zoo train` writes best.safetensors after its "
            "first finished epoch; pass --checkpoint FILE to publish another safetensors file)"
        )
    return config, run, ckpt


def _train_seconds(run_dir: Path) -> float | None:
    """The run's training time: the sum of its epochs' times in metrics.csv (None if it has none)."""
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        per_epoch = {row["epoch"]: float(row["epoch_time"]) for row in csv.DictReader(f) if row.get("epoch_time")}
    return round(sum(per_epoch.values()), 1) if per_epoch else None


def _recorded_top1(ckpt: Path, run: dict[str, Any]) -> float:
    from zoo.weights import read_metadata

    meta = read_metadata(ckpt)
    try:
        return float(meta["metric"])
    except (KeyError, ValueError):
        pass
    if run.get("best_metric") is None:
        raise PublishError(f"the run records no validation accuracy to check {ckpt} against (run.json best_metric)")
    return float(run["best_metric"])


def _build(arch: str, config: dict[str, Any], ckpt: Path, tag: str) -> nn.Module:
    from zoo.factory import create_model
    from zoo.weights import WeightsError, load_weights

    model = create_model(arch, **config.get("model_args", {}))
    try:
        load_weights(model, ckpt)
    except WeightsError as e:
        raise PublishError(str(e)) from None
    cfg = {**model.pretrained_cfg, **config.get("pretrained_cfg", {})}
    cfg.update(architecture=arch, tag=tag, num_classes=model.num_classes)
    if config.get("label_names"):
        cfg["label_names"] = list(config["label_names"])
    cfg["input_size"] = tuple(cfg["input_size"])
    model.pretrained_cfg = cfg
    return model.eval()


def _eval_set(run: dict[str, Any], model: nn.Module, data_dir: str | None) -> tuple[Any, Any]:
    from zoo.data import create_datasets

    cfg = model.pretrained_cfg
    spec = run["dataset"]
    try:
        _, val_set, info = create_datasets(
            spec, data_dir or run.get("data_dir"), model_cfg=cfg, val_split=run.get("val_split"),
            seed=run.get("seed", 0), normalization=(cfg["mean"], cfg["std"]), splits=("val",),
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        raise PublishError(f"cannot re-evaluate on {spec}: {e} (pass --data-dir)") from None
    if val_set is None:
        raise PublishError(f"{spec} has no validation images to re-evaluate on")
    recorded = run.get("val_images")
    if recorded and recorded < len(val_set):
        from zoo.train import _subset

        # The run validated on a seeded subset (--val-subset); measure the same images.
        val_set = _subset(val_set, recorded, run.get("seed", 0) + 1)
    return val_set, info


# ---------------------------------------------------------------------------------------------- checks


def _check_round_trip(original: dict[str, torch.Tensor], staged: Path) -> Check:
    from zoo.weights import load_file

    back = load_file(staged)
    missing = sorted(set(original) - set(back))
    extra = sorted(set(back) - set(original))
    differ = [
        k for k in original
        if k in back and (back[k].dtype != original[k].dtype or not torch.equal(back[k], original[k]))
    ]  # fmt: skip
    if missing or extra or differ:
        worst = max(
            ((back[k].double() - original[k].double()).abs().max().item() for k in differ
             if back[k].shape == original[k].shape),
            default=float("nan"),
        )  # fmt: skip
        detail = f"{len(differ)} tensors differ (max abs diff {worst:.3g}), {len(missing)} missing, {len(extra)} extra"
        return Check("safetensors round trip", False, detail)
    return Check("safetensors round trip", True, f"{len(original)} tensors identical")


def _check_torchvision(arch: str, model: nn.Module, staged: Path) -> Check:
    name = "torchvision layout"
    try:
        import torchvision
    except ImportError:
        return Check(name, None, "torchvision is not installed")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        return Check(name, None, f"torchvision has no {arch}")
    from zoo.weights import empty_init, load_file

    state = load_file(staged)
    with empty_init():
        reference = torchvision.models.get_model(arch, num_classes=model.num_classes)
    want = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        return Check(name, None, f"torchvision's {arch} has another layout than this model (stem or in_chans)")
    reference.load_state_dict(state, assign=True)
    reference.eval()
    c, h, w = model.pretrained_cfg["input_size"]
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (reference(x) - model(x)).abs().max().item()
    return Check(name, diff <= 1e-5, f"torchvision's {arch} loads the file; max output difference {diff:.3g}")


def _check_eval(staged: Path, arch: str, run: dict[str, Any], recorded: float, data_dir: str | None,
                tolerance: float, batch_size: int) -> tuple[Check, dict[str, Any], Any]:  # fmt: skip
    from zoo.evaluate import evaluate
    from zoo.factory import create_model

    exported = create_model(arch, checkpoint_path=staged)  # the path users take, metadata included
    dataset, info = _eval_set(run, exported, data_dir)
    results = evaluate(exported, dataset, batch_size=batch_size, label_names=info.classes)
    off = abs(results["acc1"] - recorded)
    detail = (
        f"top-1 {results['acc1']:.2f} % on {results['count']} {info.name} images vs recorded {recorded:.2f} % "
        f"(off by {off:.2f} points, allowed {tolerance:.2f})"
    )
    return Check("fresh evaluation", off <= tolerance, detail), results, info


# ---------------------------------------------------------------------------------------------- files


def _timm_config(model: nn.Module, arch: str, config: dict[str, Any]) -> dict[str, Any]:
    cfg = model.pretrained_cfg
    pretrained_cfg = {
        "tag": cfg.get("tag"),
        "custom_load": False,
        "input_size": list(cfg["input_size"]),
        "fixed_input_size": arch.startswith("mnist_cnn"),
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
        "global_pool": "avg" if hasattr(model, "avgpool") else "",
        "label_names": list(cfg.get("label_names") or []),
        "model_args": dict(config.get("model_args", {})),
        "pretrained_cfg": pretrained_cfg,
    }


def _usage(name: str, arch: str, repo_id: str | None, tv_ok: bool, timm_ok: bool, in_chans: int) -> str:
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


def _model_card(
    name: str, model: nn.Module, config: dict[str, Any], run: dict[str, Any], results: dict[str, Any],
    info: Any, checks: list[Check], license_id: str, repo_id: str | None, eval_command: str, extra_files: list[str],
) -> str:  # fmt: skip
    arch, tag = split_model_name_tag(name)
    kind = info.name
    hub_dataset, display, data_licence = DATASET_CARDS.get(kind, (None, kind, "see the dataset"))
    tv_ok = any(c.name == "torchvision layout" and c.passed for c in checks)
    timm_ok = _timm_has(arch) and config.get("model_args", {}).get("stem", "imagenet") == "imagenet"
    params = sum(p.numel() for p in model.parameters())
    front = [
        "---",
        f"license: {license_id}",
        "library_name: zoo",
        "pipeline_tag: image-classification",
        "tags:",
        "- image-classification",
        "- pytorch",
        "- safetensors",
        *(["- timm"] if timm_ok else []),
        *([f"datasets:\n- {hub_dataset}"] if hub_dataset else []),
        "metrics:",
        "- accuracy",
        "model-index:",
        f"- name: {name}",
        "  results:",
        "  - task:",
        "      type: image-classification",
        "    dataset:",
        f"      name: {display}",
        f"      type: {hub_dataset or kind}",
        "      split: test",
        "    metrics:",
        "    - type: accuracy",
        f"      value: {results['acc1']:.2f}",
        "      name: top-1 accuracy",
        "    - type: accuracy",
        f"      value: {results['acc5']:.2f}",
        "      name: top-5 accuracy",
        "---",
    ]
    recipe = run.get("recipe", {})
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
        _usage(name, arch, repo_id, tv_ok, timm_ok, cfg["input_size"][0]),
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
        f"Command: `{run.get('zoo_command') or run.get('command', 'unknown')}`",
        "",
        f"Best epoch {run.get('best_epoch')} of {run.get('epochs_done')}; "
        + (f"{run['train_seconds']:.0f} s of training " if run.get("train_seconds") else "")
        + f"on {run.get('device', 'cpu')}, torch {run.get('torch', torch.__version__)}.",
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
    return "\n".join(front + [""] + body)


def _timm_has(arch: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return arch in timm.list_models(arch)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _install(staging: Path, out_dir: Path, force: bool) -> None:
    """Move the staged folder to ``out_dir``; an existing folder (``force``) is swapped out, then removed."""
    old = None
    if out_dir.exists():
        if not force:
            raise PublishError(f"{out_dir} exists; pass --force to replace it")
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _bundle(staged_weights: Path, name: str) -> str:
    from zoo.manifest import weights_dir

    target = weights_dir() / f"{name}.safetensors"
    with atomic_path(target) as tmp:
        shutil.copyfile(staged_weights, tmp)
    return target.name


# ---------------------------------------------------------------------------------------------- publish


def publish(
    run_dir: str | os.PathLike[str],
    name: str,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    data_dir: str | None = None,
    repo_id: str | None = None,
    push: bool = False,
    dry_run: bool = False,
    force: bool = False,
    bundle: bool = False,
    update_manifest: bool = True,
    default: bool = True,
    license_id: str = "bsd-3-clause",
    tolerance: float = 0.1,
    batch_size: int = 1000,
    api: Any = None,
) -> PublishResult:
    """Check a training run's weights and write them as a Hub-ready folder (see the module docstring).

    ``bundle`` also copies the weights into ``weights/`` as a bundled file; ``push`` uploads the folder
    to ``repo_id`` through ``huggingface_hub`` (``api`` replaces its ``HfApi``); ``dry_run`` runs every
    check and shows what would be written and uploaded, writing nothing.
    """
    arch, tag = split_model_name_tag(name)
    if not tag:
        raise PublishError(f"--name {name!r} needs a weights tag: 'arch.tag', e.g. '{arch}.mnist'")
    if not is_model(arch):
        raise PublishError(f"--name {name!r}: {arch!r} is not a registered model (`zoo list`)")
    if out_dir is None and not dry_run:
        raise PublishError("give --out FOLDER for the published files")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not force and not dry_run:
        raise PublishError(f"{out} exists; pass --force to replace it")
    if push and not repo_id:
        from zoo.manifest import hub_org

        repo_id = f"{hub_org()}/{name}"
    config, run, ckpt = _load_run(Path(run_dir), Path(checkpoint) if checkpoint else None)
    run = {**run, "train_seconds": _train_seconds(Path(run_dir))}
    if config.get("architecture") and config["architecture"] != arch:
        raise PublishError(f"{run_dir} trained {config['architecture']!r}, not {arch!r} (from --name {name!r})")
    recorded = _recorded_top1(ckpt, run)
    model = _build(arch, config, ckpt, tag)
    original = model.state_dict()

    from zoo.evaluate import plot_confusion
    from zoo.weights import save_weights

    parent = (out.parent if out is not None else Path(tempfile.gettempdir())).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=parent))
    try:
        meta = {"zoo.architecture": arch, "zoo.tag": tag, "zoo.num_classes": str(model.num_classes),
                "zoo.model_args": config.get("model_args", {})}  # fmt: skip
        saved = save_weights(model, staging / WEIGHTS_FILE, meta)
        checks = [_check_round_trip(original, saved.path), _check_torchvision(arch, model, saved.path)]
        data_hint = data_dir or run.get("data_dir") or "DATA"
        eval_command = (
            f"zoo eval {name} --pretrained --dataset {run['dataset']} --data-dir {shlex.quote(str(data_hint))}"
        )
        if checks[0].passed:
            check, results, info = _check_eval(saved.path, arch, run, recorded, data_dir, tolerance, batch_size)
            checks.append(check)
        failed = [c for c in checks if c.passed is False]
        if failed:
            report = "\n".join(c.line() for c in checks)
            raise PublishError(f"{name} was not published: {', '.join(c.name for c in failed)} failed\n{report}")

        extra_files = []
        if (Path(run_dir) / "curves.png").is_file():
            shutil.copyfile(Path(run_dir) / "curves.png", staging / "curves.png")
            extra_files.append("curves.png")
        title = f"{name} ({info.name} test)"
        plot_confusion(results["confusion"], results["label_names"], staging / "confusion.png", title)
        extra_files.append("confusion.png")
        _write_text(staging / "config.json", json.dumps(_timm_config(model, arch, config), indent=2) + "\n")
        card = _model_card(name, model, config, run, results, info, checks, license_id, repo_id, eval_command,
                           extra_files)  # fmt: skip
        _write_text(staging / "README.md", card)
        keep = ("acc1", "acc5", "loss", "count", "per_class_acc", "label_names", "confusion")
        _write_text(staging / "eval.json", json.dumps({k: results[k] for k in keep}, indent=1) + "\n")
        files = sorted(p.name for p in staging.iterdir())
        metrics = {"top1": round(results["acc1"], 2), "top5": round(results["acc5"], 2), "command": eval_command}
        result = PublishResult(name, out, saved.sha256, saved.size, metrics, checks, files)
        if dry_run:
            result.out_dir = None
            return result
        entry = _manifest_entry(name, model, run, info, saved, metrics, license_id, repo_id, bundle, push, default)
        if update_manifest:
            from zoo.manifest import validate_entry

            validate_entry(name, entry, check_files=False)  # a bad entry fails before any file is moved
        if push:
            result.commit_url = _push(staging, repo_id, name, force, api)  # type: ignore[arg-type]
        assert out is not None
        _install(staging, out, force)
        if update_manifest:
            from zoo.manifest import update_entry

            if bundle:
                _bundle(out / WEIGHTS_FILE, name)
            result.manifest_entry = update_entry(name, entry)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _manifest_entry(
    name: str, model: nn.Module, run: dict[str, Any], info: Any, saved: Any, metrics: dict[str, Any],
    license_id: str, repo_id: str | None, bundle: bool, push: bool, default: bool,
) -> dict[str, Any]:  # fmt: skip
    cfg = model.pretrained_cfg
    if bundle:
        source: dict[str, Any] = {"type": "bundled", "path": f"{name}.safetensors"}
    else:
        source = {"type": "hub", "repo_id": repo_id or f"{{org}}/{name}", "filename": WEIGHTS_FILE, "revision": "main"}
    return {
        "status": "published" if bundle or push else "unpublished",
        "default": default,
        "source": source,
        "sha256": saved.sha256,
        "size": saved.size,
        "num_classes": model.num_classes,
        "label_names": list(cfg.get("label_names") or []) or None,
        "input_size": list(cfg["input_size"]),
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_pct": cfg.get("crop_pct", 1.0),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "model_args": {k: v for k, v in run.get("model_args", {}).items() if k not in ("num_classes", "in_chans")},
        "dataset": info.name,
        "metrics": {**metrics, "measured_by": "zoo publish (fresh evaluation of the exported file)"},
        "license": license_id,
        "origin": {
            "command": run.get("zoo_command") or run.get("command", ""),
            "recipe": (run.get("recipe") or {}).get("name", ""),
            "best_epoch": run.get("best_epoch"),
            "epochs": run.get("epochs_done"),
            "train_seconds": run.get("train_seconds"),
            "device": run.get("device"),
            "published_by": f"zoo publish {name}",
        },
    }


def _push(folder: Path, repo_id: str, name: str, force: bool, api: Any) -> str:
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True)
    if api.file_exists(repo_id=repo_id, filename=WEIGHTS_FILE) and not force:
        raise PublishError(f"{repo_id} already has a {WEIGHTS_FILE}; pass --force to publish a new revision over it")
    commit = api.upload_folder(
        repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message=f"zoo publish {name}"
    )
    return str(getattr(commit, "commit_url", commit))


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo publish``."""
    parser.add_argument("run", help="the run folder of `zoo train` (its --output)")
    parser.add_argument("--name", required=True, help="the weights' name, arch.tag (e.g. mnist_cnn.mnist)")
    parser.add_argument("--out", help="folder to write (model.safetensors, config.json, README.md, ...)")
    parser.add_argument("--checkpoint", help="publish this safetensors file instead of the run's best.safetensors")
    parser.add_argument("--data-dir", help="where the evaluation data is (default: the run's)")
    parser.add_argument("--repo-id", help="Hugging Face repo id (default: $ZOO_HUB_ORG/NAME)")
    parser.add_argument("--push", action="store_true", help="upload the folder to the Hub after writing it")
    parser.add_argument("--dry-run", action="store_true", help="run the checks and show what would be written")
    parser.add_argument("--force", action="store_true", help="replace an existing folder or Hub revision")
    parser.add_argument("--bundle", action="store_true", help="also copy the weights into weights/ (small files)")
    parser.add_argument("--no-manifest", action="store_true", help="leave weights/manifest.json as it is")
    parser.add_argument("--not-default", action="store_true", help="do not make these the arch's default weights")
    parser.add_argument("--license", default="bsd-3-clause", help="licence of the weights (default bsd-3-clause)")
    parser.add_argument("--tolerance", type=float, default=0.1, help="allowed top-1 drift in points (default 0.1)")


def main(args: argparse.Namespace) -> int:
    """Run ``zoo publish``."""
    try:
        result = publish(
            args.run, args.name, args.out, checkpoint=args.checkpoint, data_dir=args.data_dir, repo_id=args.repo_id,
            push=args.push, dry_run=args.dry_run, force=args.force, bundle=args.bundle,
            update_manifest=not args.no_manifest, default=not args.not_default, license_id=args.license,
            tolerance=args.tolerance,
        )  # fmt: skip
    except PublishError as e:
        print(f"zoo publish: {e}", file=sys.stderr)
        return 1
    print("checks:")
    print("\n".join(c.line() for c in result.checks))
    print(f"model.safetensors  sha256 {result.sha256}  {result.size:,} bytes")
    print(f"top-1 {result.metrics['top1']:.2f} %  top-5 {result.metrics['top5']:.2f} %")
    if result.out_dir is None:
        upload = f" and upload them to {args.repo_id or 'the Hub'}" if args.push else ""
        print(f"dry run: would write {', '.join(result.files)}{upload}")
        return 0
    print(f"wrote {result.out_dir}: {', '.join(result.files)}")
    if result.manifest_entry is not None:
        print(f"manifest entry {args.name}: {result.manifest_entry['status']}")
    if result.commit_url:
        print(f"pushed: {result.commit_url}")
    return 0


if __name__ == "__main__":
    from zoo.cli import main as cli_main

    sys.exit(cli_main(["publish", *sys.argv[1:]]))
