"""Write the torchvision ImageNet entries of weights/manifest.json and weights/imagenet_classes.json.

Everything comes from torchvision's own ``Weights`` metadata in the installed package (accuracies,
preprocessing, class names, URLs), through ``zoo.hub.convert.torchvision_entry``, the same code that
``zoo convert torchvision`` uses; nothing is typed in by hand.

    python tools/gen_manifest.py           # rewrite the entries
    python tools/gen_manifest.py --check   # exit 1 if the manifest differs from what would be written

What a later step recorded is kept: an entry's status, sha256 and size (set when its file is converted
and published) and any entry this script does not generate (e.g. bundled MNIST weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.hub import manifest  # noqa: E402
from zoo.hub.convert import CONVERTIBLE, IMAGENET_LABELS, TORCHVISION_TAGS, torchvision_entry  # noqa: E402

KEEP = ("status", "sha256", "size")


def generate(current: dict) -> tuple[dict, list[str]]:
    """The manifest with every torchvision entry regenerated, and the ImageNet class names."""
    import torchvision.models as tvm

    weights = dict(current.get("weights", {}))
    categories: list[str] | None = None
    for arch in CONVERTIBLE:
        members = [w for w in tvm.get_model_weights(arch) if w.name in TORCHVISION_TAGS]
        best = max(members, key=lambda w: w.name)  # V2 where torchvision has it: the better weights
        for w in members:
            tag, entry = torchvision_entry(arch, w.name)
            name = f"{arch}.{tag}"
            old = weights.get(name, {})
            kept = {k: old[k] for k in KEEP if old.get(k) is not None}
            weights[name] = dataclasses.replace(entry, **kept, default=w is best).to_dict()
            names = list(w.meta["categories"])
            if categories is not None and names != categories:
                raise SystemExit(f"{arch} {w.name} has other ImageNet class names than the others")
            categories = names
    assert categories is not None
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
