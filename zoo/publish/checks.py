"""The checks a run's weights pass before they are published: round trip, torchvision layout, fresh evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.data import create_datasets, subset
from zoo.errors import PublishError
from zoo.evaluation import evaluate
from zoo.pretrained.files import load_file
from zoo.pretrained.load import empty_init
from zoo.runs import RunRecord, load_model


@dataclass
class Check:
    """One pre-publication check and its outcome."""

    name: str
    passed: bool | None  # None: not applicable (skipped), with the reason in detail
    detail: str

    def line(self) -> str:
        state = {True: "passed", False: "FAILED", None: "skipped"}[self.passed]
        return f"  {self.name:<22} {state:<8} {self.detail}"


def check_round_trip(original: dict[str, torch.Tensor], staged: Path) -> Check:
    """The written file gives back every tensor of the checkpoint, bit for bit and with its dtype."""
    back = load_file(staged)
    missing, extra = original.keys() - back.keys(), back.keys() - original.keys()
    same = {k for k in original.keys() & back.keys() if back[k].dtype == original[k].dtype}
    differ = sorted(k for k in original.keys() & back.keys() if k not in same or not torch.equal(back[k], original[k]))
    if missing or extra or differ:
        detail = f"{len(differ)} tensors differ ({', '.join(differ[:3])}), {len(missing)} missing, {len(extra)} extra"
        return Check("safetensors round trip", False, detail)
    return Check("safetensors round trip", True, f"{len(original)} tensors identical")


def check_torchvision(arch: str, model: nn.Module, staged: Path) -> Check:
    """torchvision's model of ``arch``, where there is one of the same layout, loads the file and gives the same
    outputs."""
    import torchvision

    name = "torchvision layout"
    if arch not in torchvision.models.list_models(module=torchvision.models):
        return Check(name, None, f"torchvision has no {arch}")
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


def check_eval(
    staged: Path, run: RunRecord, recorded: float | None, data_dir: str | None, tolerance: float, batch_size: int
) -> tuple[Check, dict[str, Any], Any]:
    """Evaluate the exported file afresh on the run's evaluation split, read as the run read it; it must reproduce
    the run's ``recorded`` top-1 within ``tolerance`` (a run kept by being the last epoch has none to reproduce)."""
    exported = load_model(staged)  # as users load it: the file's header builds the model
    cfg = exported.pretrained_cfg
    if not run.dataset:
        raise PublishError("the run's run.json does not name its dataset: there is nothing to re-evaluate on")
    folder = (run.dataset_kind or run.dataset).startswith("imagefolder")
    try:
        _, dataset, info = create_datasets(
            run.dataset,
            data_dir or run.data_dir,
            model_cfg=cfg,
            val_split=run.val_split if folder else None,
            seed=run.seed or 0,
            normalization=(cfg["mean"], cfg["std"]),
            splits=("val",),
            strict_images=not run.data.get("skipped_images"),  # as the run read its folder
        )
    except (FileNotFoundError, ValueError) as e:
        raise PublishError(f"cannot re-evaluate on {run.dataset}: {e} (pass --data-dir)") from None
    if dataset is None:
        raise PublishError(f"{run.dataset} has no validation images to re-evaluate on")
    evaluated = run.test_images if info.eval_split == "test" else run.val_images
    if evaluated and evaluated < len(dataset):  # the run evaluated a seeded subset (--val-subset): the same images
        dataset = subset(dataset, evaluated, (run.seed or 0) + 1)
    results = evaluate(exported, dataset, batch_size=batch_size, label_names=info.classes)
    measured = f"top-1 {results['acc1']:.2f} % on {results['count']} {info.name} images ({info.eval_set_name})"
    if recorded is None:
        detail = f"{measured}; the run recorded no top-1 to compare (its epoch was chosen by {run.best_metric_name})"
        return Check("fresh evaluation", None, detail), results, info
    off = abs(results["acc1"] - recorded)
    detail = f"{measured} vs recorded {recorded:.2f} % (off by {off:.2f} points, allowed {tolerance:.2f})"
    return Check("fresh evaluation", off <= tolerance, detail), results, info
