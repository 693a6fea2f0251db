"""Write the sample images bundled with zoo (`zoo predict` with no arguments classifies them).

    python scripts/make_sample_images.py --data-dir ../shared/data

Takes the first test image of each class from the real MNIST and Fashion-MNIST test sets and saves it
as a PNG under zoo/assets/samples/, with samples.json recording the source index and true label. CIFAR-10's
come the same way from the original test set (torchvision's ``cifar-10-batches-py/test_batch``), lossless.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
OUT = Path(__file__).resolve().parent.parent / "zoo" / "assets" / "samples"


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    records = []
    for dataset, folder, names in (
        ("mnist", "MNIST", [str(i) for i in range(10)]),
        ("fashion_mnist", "FashionMNIST", FASHION),
    ):
        raw = args.data_dir / folder / "raw"
        images = _read_idx(raw / "t10k-images-idx3-ubyte.gz")
        labels = _read_idx(raw / "t10k-labels-idx1-ubyte.gz")
        for label, name in enumerate(names):
            index = int(np.flatnonzero(labels == label)[0])
            slug = name.lower().replace("/", "-").replace(" ", "-")
            file = f"{dataset}-{index:04d}-{slug}.png"
            Image.fromarray(images[index], mode="L").save(OUT / file, optimize=True)
            records.append({"file": file, "dataset": dataset, "test_index": index, "label": name})
    records += _cifar10(args.data_dir / "CIFAR10" / "cifar-10-batches-py")
    (OUT / "samples.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} images to {OUT}")


def _cifar10(batches: Path) -> list[dict]:
    with open(batches / "test_batch", "rb") as f:
        test = pickle.load(f, encoding="latin1")
    with open(batches / "batches.meta", "rb") as f:
        names = pickle.load(f, encoding="latin1")["label_names"]
    images = np.asarray(test["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(test["labels"])
    for old in OUT.glob("cifar10-*"):
        old.unlink()
    records = []
    for label, name in enumerate(names):
        index = int(np.flatnonzero(labels == label)[0])
        file = f"cifar10-{index:04d}-{name}.png"
        Image.fromarray(images[index], mode="RGB").save(OUT / file, optimize=True)
        records.append({"file": file, "dataset": "cifar10", "test_index": index, "label": name})
    return records


if __name__ == "__main__":
    main()
