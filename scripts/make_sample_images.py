"""Write the sample images bundled with zoo (`zoo predict` with no arguments classifies them).

    python scripts/make_sample_images.py --data-dir ../shared/data

Takes the first test image of each class from the real MNIST and Fashion-MNIST test sets and saves it
as a PNG under zoo/assets/samples/, with samples.json recording the source index and true label. From
CIFAR-10 (the JPEG archive, test/<class>/NNNN.jpg) it copies the first file of each class byte for byte.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tarfile
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
    records += _cifar10(args.data_dir / "CIFAR10" / "cifar10-jpg.tar.gz")
    (OUT / "samples.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} images to {OUT}")


def _cifar10(archive: Path) -> list[dict]:
    records = []
    with tarfile.open(archive) as tar:
        firsts: dict[str, tarfile.TarInfo] = {}
        for member in tar:
            parts = member.name.split("/")
            is_test_jpeg = member.isfile() and len(parts) == 3 and parts[0] == "test" and parts[2].endswith(".jpg")
            if is_test_jpeg and (parts[1] not in firsts or parts[2] < firsts[parts[1]].name.split("/")[2]):
                firsts[parts[1]] = member
        for name, member in sorted(firsts.items()):
            index = int(Path(member.name).stem)
            file = f"cifar10-{index:04d}-{name}.jpg"
            (OUT / file).write_bytes(tar.extractfile(member).read())
            records.append({"file": file, "dataset": "cifar10", "test_file": member.name, "label": name})
    return records


if __name__ == "__main__":
    main()
