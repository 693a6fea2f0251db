"""Write the ImageNet entries of weights/manifest.json and weights/imagenet_classes.json.

Nothing is typed in by hand; every value comes from a source this script names:

* torchvision's weights (``tv_in1k``, ``tv2_in1k``): preprocessing, accuracy, class names and the download
  URL from torchvision's own ``Weights`` metadata in the installed package
  (``zoo.pretrained.convert.torchvision_entry``), and the size of the ``.pth`` file at that URL,
  ``origin.url_size_mib`` (torchvision's ``meta["_file_size"]``: bytes / 2**20, to three decimals), which
  the docs show; ``size`` stays null, as it is the verified byte size of a file of this project's own.
  Their first source is the Hugging Face repo where timm publishes the same weights as safetensors
  (``timm/<arch>.<tag>``, from timm's pretrained cfg ``hf_hub_id``); torchvision's ``.pth`` URL is the fallback.
* timm's other ImageNet-1k weights for the architectures zoo builds (``resnet50.a1_in1k`` ...): preprocessing
  and licence from timm's pretrained cfg; accuracy only from timm's published results,
  ``tools/timm_results_imagenet.csv`` (the rows of ``results/results-imagenet.csv`` of
  huggingface/pytorch-image-models at commit ``TIMM_RESULTS_COMMIT`` for these architectures), at the
  entry's own evaluation size and crop. A tag is listed only after building timm's model and zoo's and
  checking that every key and shape maps exactly.

    python tools/gen_manifest.py           # rewrite the entries
    python tools/gen_manifest.py --check   # exit 1 if the manifest differs from what would be written

Every entry this script does not generate (bundled weights, zoo's own unpublished ones) is kept as it is.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.pretrained import manifest  # noqa: E402
from zoo.pretrained.convert import CONVERTIBLE, IMAGENET_LABELS, TORCHVISION_TAGS, torchvision_entry  # noqa: E402

TIMM_RESULTS = ROOT / "tools" / "timm_results_imagenet.csv"
TIMM_RESULTS_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
TIMM_VALIDATE = "python validate.py /path/to/imagenet --model {name} --pretrained"


def _hub(repo_id: str) -> dict[str, Any]:
    return {"type": "hub", "repo_id": repo_id, "filename": "model.safetensors", "revision": "main"}


def _check_layout(arch: str) -> None:
    """Build timm's model and zoo's (on the meta device) and require that timm's keys map exactly onto zoo's."""
    import timm
    import torch

    import zoo
    from zoo.pretrained.load import from_timm_layout

    with torch.device("meta"):
        theirs = from_timm_layout(timm.create_model(arch, pretrained=False).state_dict())
        ours = zoo.create_model(arch).state_dict()
    shapes = {k: tuple(v.shape) for k, v in theirs.items()}
    expected = {k: tuple(v.shape) for k, v in ours.items()}
    if shapes != expected:
        diff = sorted(set(shapes.items()) ^ set(expected.items()))[:6]
        raise SystemExit(f"timm's {arch} does not map onto zoo's: {diff}")


def _timm_results() -> dict[tuple[str, int, float], tuple[float, float]]:
    with open(TIMM_RESULTS, newline="") as f:
        return {(r["model"], int(r["img_size"]), round(float(r["crop_pct"]), 3)): (float(r["top1"]), float(r["top5"]))
                for r in csv.DictReader(f)}  # fmt: skip


def _torchvision_entries(weights: dict[str, Any]) -> list[str]:
    import timm
    import torchvision.models as tvm

    categories: list[str] | None = None
    for arch in CONVERTIBLE:
        members = [w for w in tvm.get_model_weights(arch) if w.name in TORCHVISION_TAGS]
        best = max(members, key=lambda w: w.name)  # V2 where torchvision has it: the better weights
        for w in members:
            tag, entry = torchvision_entry(arch, w.name)
            name = f"{arch}.{tag}"
            cfg = timm.models.get_pretrained_cfg(name)
            if cfg is None or not cfg.hf_hub_id:
                raise SystemExit(f"timm has no Hub repo for {name}")
            new = entry.to_dict()
            new.pop("default", None)
            if w is best:
                new["default"] = True
            new.update(status="published", sha256=None, size=None, source=_hub(cfg.hf_hub_id),
                       fallbacks=[{"type": "url", "url": w.url}])  # fmt: skip
            origin = {k: v for k, v in new["origin"].items() if k != "command"}
            origin["hf_hub"] = f"{cfg.hf_hub_id} (timm's copy of torchvision's weights)"
            if w.meta.get("_file_size"):  # for the docs only: fetching checks the .pth by its hash prefix
                origin["url_size_mib"] = w.meta["_file_size"]
            new["origin"] = origin
            weights[name] = new
            names = list(w.meta["categories"])
            if categories is not None and names != categories:
                raise SystemExit(f"{arch} {w.name} has other ImageNet class names than the others")
            categories = names
    assert categories is not None
    return categories


def _timm_entries(weights: dict[str, Any]) -> None:
    import timm

    results = _timm_results()
    for arch in CONVERTIBLE:
        _check_layout(arch)
        for name in timm.list_pretrained(f"{arch}.*"):
            tag = name.split(".", 1)[1]
            cfg = timm.models.get_pretrained_cfg(name)
            if tag in TORCHVISION_TAGS.values() or name.split(".")[0] != arch:
                continue
            if cfg.num_classes != 1000 or not tag.endswith("in1k"):  # e.g. resnet50.bamboo: no ImageNet-1k head
                continue
            size = tuple(cfg.test_input_size or cfg.input_size)
            crop = cfg.test_crop_pct or cfg.crop_pct
            top = results.get((name, size[1], round(crop, 3)))
            metrics = None
            if top is not None:
                metrics = {"top1": top[0], "top5": top[1], "command": TIMM_VALIDATE.format(name=name),
                           "measured_by": f"timm (results/results-imagenet.csv of huggingface/pytorch-image-models "
                                          f"at {TIMM_RESULTS_COMMIT[:10]})"}  # fmt: skip
            origin = {"upstream": f"timm {name}", "hf_hub": cfg.hf_hub_id}
            if tuple(cfg.input_size) != size:
                origin["train_input_size"] = list(cfg.input_size)
            if top is None:
                origin["metrics"] = "timm publishes no ImageNet result for this size and crop; none is listed"
            new = {
                "status": "published", "source": _hub(cfg.hf_hub_id), "sha256": None, "size": None,
                "num_classes": 1000, "label_names": IMAGENET_LABELS, "input_size": list(size),
                "interpolation": cfg.interpolation, "crop_pct": crop, "crop_mode": "center" if cfg.crop_mode in
                (None, "center") else None, "mean": list(cfg.mean), "std": list(cfg.std), "dataset": "imagenet-1k",
                "metrics": metrics, "license": cfg.license or "unknown", "origin": origin,
            }  # fmt: skip
            new = {k: v for k, v in new.items() if v is not None or k in ("sha256", "size")}
            weights[name] = new


def generate(current: dict) -> tuple[dict, list[str]]:
    """The manifest with every ImageNet entry regenerated, and the ImageNet class names."""
    weights = dict(current.get("weights", {}))
    categories = _torchvision_entries(weights)
    _timm_entries(weights)
    return {**current, "schema": manifest.SCHEMA, "weights": weights}, categories


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args()
    folder = manifest.weights_dir()
    path = folder / "manifest.json"
    current = json.loads(path.read_text()) if path.is_file() else {"schema": manifest.SCHEMA, "weights": {}}
    current.setdefault("hub_org", manifest.DEFAULT_HUB_ORG)
    data, categories = generate(current)
    labels_text = json.dumps(categories, indent=1, ensure_ascii=False) + "\n"
    labels_path = folder / IMAGENET_LABELS
    if args.check:
        stale = [p for p, text in ((path, manifest.dumps(data)), (labels_path, labels_text))
                 if not p.is_file() or p.read_text() != text]  # fmt: skip
        for p in stale:
            print(f"{p} is out of date: run python tools/gen_manifest.py", file=sys.stderr)
        return 1 if stale else 0
    labels_path.write_text(labels_text, encoding="utf-8")
    manifest.write_manifest(data, path)
    print(f"wrote {len(data['weights'])} entries to {path} and {len(categories)} class names to {labels_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
