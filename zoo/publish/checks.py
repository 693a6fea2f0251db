"""The checks a run's weights pass before they are published: round trip, torchvision layout, fresh evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.errors import PublishError

__all__ = ["Check", "check_eval", "check_round_trip", "check_torchvision", "eval_set"]


@dataclass
class Check:
    """One pre-publication check and its outcome."""

    name: str
    passed: bool | None  # None: not applicable (skipped), with the reason in detail
    detail: str

    def line(self) -> str:
        state = {True: "passed", False: "FAILED", None: "skipped"}[self.passed]
        return f"  {self.name:<22} {state:<8} {self.detail}"


def eval_set(run: dict[str, Any], model: nn.Module, data_dir: str | None) -> tuple[Any, Any]:
    from zoo.data import create_datasets

    cfg = model.pretrained_cfg
    spec = run["dataset"]
    folder_split = run.get("val_split") if (run.get("dataset_kind") or spec).startswith("imagefolder") else None
    try:
        _, val_set, info = create_datasets(
            spec, data_dir or run.get("data_dir"), model_cfg=cfg, val_split=folder_split,
            seed=run.get("seed", 0), normalization=(cfg["mean"], cfg["std"]), splits=("val",),
            strict_images=not (run.get("data") or {}).get("skipped_images"),  # as the run read its folder
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        raise PublishError(f"cannot re-evaluate on {spec}: {e} (pass --data-dir)") from None
    if val_set is None:
        raise PublishError(f"{spec} has no validation images to re-evaluate on")
    # Runs from before held-out selection counted their test images as val_images.
    recorded = run.get("test_images") if info.eval_split == "test" and "test_images" in run else run.get("val_images")
    if recorded and recorded < len(val_set):
        from zoo.data import subset

        # The run evaluated a seeded subset (--val-subset); measure the same images.
        val_set = subset(val_set, recorded, run.get("seed", 0) + 1)
    return val_set, info


# ---------------------------------------------------------------------------------------------- checks


def check_round_trip(original: dict[str, torch.Tensor], staged: Path) -> Check:
    from zoo.pretrained.files import load_file

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


def check_torchvision(arch: str, model: nn.Module, staged: Path) -> Check:
    name = "torchvision layout"
    try:
        import torchvision
    except ImportError:
        return Check(name, None, "torchvision is not installed")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        return Check(name, None, f"torchvision has no {arch}")
    from zoo.pretrained.files import load_file
    from zoo.pretrained.load import empty_init

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


def check_eval(staged: Path, arch: str, run: dict[str, Any], recorded: float | None, data_dir: str | None,
               tolerance: float, batch_size: int) -> tuple[Check, dict[str, Any], Any]:  # fmt: skip
    """Evaluate the exported file afresh; it must reproduce the run's ``recorded`` top-1 within ``tolerance``.

    Without a recorded top-1 (a run with neither a validation nor a test set) there is nothing to reproduce:
    the check is skipped, and the fresh measurement is the only top-1 that gets published.
    """
    from zoo.evaluation import evaluate
    from zoo.factory import create_model

    exported = create_model(arch, checkpoint_path=staged)  # the path users take, metadata included
    dataset, info = eval_set(run, exported, data_dir)
    results = evaluate(exported, dataset, batch_size=batch_size, label_names=info.classes)
    measured = f"top-1 {results['acc1']:.2f} % on {results['count']} {info.name} images ({info.eval_set_name})"
    if recorded is None:
        chosen_by = run.get("best_metric_name") or "training loss"
        detail = f"{measured}; the run recorded no top-1 to compare (its epoch was chosen by {chosen_by})"
        return Check("fresh evaluation", None, detail), results, info
    off = abs(results["acc1"] - recorded)
    detail = f"{measured} vs recorded {recorded:.2f} % (off by {off:.2f} points, allowed {tolerance:.2f})"
    return Check("fresh evaluation", off <= tolerance, detail), results, info
