"""Image-folder speed: training from zoo's folder cache against the same images in memory, and large images
streamed by zoo's ImageFolderDataset against torchvision's ImageFolder.

    python benchmarks/folder_speed.py            # CIFAR-10 folder (../shared's JPEG archive), 3 rounds
    python benchmarks/folder_speed.py --quick    # tiny: checks that the script runs, keeps nothing

Small images (target: folder cache >= 0.8x in memory). resnet20 trains one epoch with zoo's trainer (``fit``,
the cifar10 ``fast`` recipe's augmentation: random crop with 4 px padding, flip, RandAugment
``rand-m5-n2-mstd0.5``; batch 128, no EMA, no validation) on ``--images`` CIFAR-10 training images:

- ``folder cache``: ``create_datasets("cifar10", folder)``, i.e. the decoded uint8 cache, memory-mapped;
- ``in memory``: the same images, copied into an ordinary tensor first;
- ``per-sample``: the same folder with the cache turned off (``ZOO_IMAGE_CACHE_MB=0``): PIL decoding and
  per-sample transforms (timm's PIL RandAugment) in 2 DataLoader workers, as zoo read every image folder before.

Each round measures all three, in rotating order; the ratio reported is the median over rounds of each
one's img/s over the in-memory img/s of the same round (a shared machine's load changes within minutes).

Large images (target: zoo >= 0.9x torchvision). A folder of 256x256 JPEGs (real CIFAR-10 images upscaled, or
synthetic ones without ../shared) is read at 224 px through the same timm training transform (random resized
crop, flip, RandAugment ``rand-m9-mstd0.5-inc1``) by zoo's ``ImageFolderDataset`` and by
``torchvision.datasets.ImageFolder``, with the same DataLoader (batch 64, ``--workers`` workers); no model,
only the loader's img/s, rounds and ratios as above.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, print_machine, write_results  # noqa: E402

ARCHIVE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "CIFAR10" / "cifar10-jpg.tar.gz"


def cifar_folder(work: Path, per_class_train: int, per_class_test: int) -> tuple[Path, str]:
    """A CIFAR-10 image folder with this many images per class: hard links into the extracted archive, or
    synthetic 32x32 JPEGs when the archive is not there."""
    from PIL import Image

    out = work / "cifar10"
    if ARCHIVE.is_file():
        from zoo.data.cifar import extract_cifar10_jpg

        full = extract_cifar10_jpg(ARCHIVE)
        for split, n in (("train", per_class_train), ("test", per_class_test)):
            for cls in sorted(p for p in (full / split).iterdir() if p.is_dir()):
                (out / split / cls.name).mkdir(parents=True, exist_ok=True)
                for f in sorted(cls.iterdir())[:n]:
                    os.link(f, out / split / cls.name / f.name)
        return out, f"CIFAR-10 JPEGs from {ARCHIVE.name}"
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for k in range(10):
            (out / split / f"class{k}").mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(out / split / f"class{k}" / f"{i:04d}.jpg", quality=90)
    return out, "synthetic 32x32 JPEGs (no CIFAR-10 archive found)"


def large_folder(work: Path, small: Path, n: int) -> Path:
    """``n`` 256x256 JPEGs in 10 class folders, upscaled from the small folder's training images."""
    from PIL import Image

    out = work / "large"
    files = sorted((small / "train").glob("*/*.jpg"))
    for i in range(n):
        src = files[i % len(files)]
        (out / src.parent.name).mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im.convert("RGB").resize((256, 256), Image.BICUBIC).save(out / src.parent.name / f"{i:05d}.jpg", quality=90)
    return out


def train_speed(dataset, base: torch.nn.Module, recipe) -> float:
    import zoo
    from zoo.training import fit

    model = zoo.create_model("resnet20", num_classes=10)
    model.load_state_dict(base.state_dict())
    result = fit(model, dataset, None, recipe, None, progress=False)
    return float(result.history[-1]["img_per_s"])


def loader_speed(dataset, batch: int, workers: int) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    t0 = time.perf_counter()
    seen = sum(len(y) for _, y in loader)
    return seen / (time.perf_counter() - t0)


def interleaved(sets: dict, reference: str, rounds: int, measure) -> dict[str, tuple[list[float], list[float]]]:
    """img/s of every set in each round, the order rotating from round to round, and each one's ratio to the
    reference measured in the same round: a shared machine's load changes within minutes, so only
    measurements taken side by side are compared."""
    names = list(sets)
    speeds: dict[str, list[float]] = {n: [] for n in names}
    measure(sets[reference])  # warm-up, not counted: the first run in a process pays for one-time set-up
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            speeds[name].append(measure(sets[name]))
    ref = speeds[reference]
    return {n: (v, [a / b for a, b in zip(v, ref, strict=True)]) for n, v in speeds.items()}


def summarise(part: str, images: int, results: dict[str, tuple[list[float], list[float]]]) -> list[dict]:
    rows = []
    for name, (speeds, ratios) in results.items():
        ips, ratio = statistics.median(speeds), statistics.median(ratios)
        rows.append({"part": part, "path": name, "images": images, "img_s": round(ips, 1), "ratio": round(ratio, 3),
                     "ratios": " ".join(f"{x:.3f}" for x in ratios), "rounds": len(speeds)})  # fmt: skip
        print(f"  {part}, {name:<24} {ips:8.1f} img/s (median)  ratio {ratio:.3f} (median of rounds: "
              f"{rows[-1]['ratios']})", flush=True)  # fmt: skip
    return rows


def small_images(args, work: Path, rows: list, info: dict) -> None:
    import zoo
    from zoo.data import TensorImageDataset, create_datasets
    from zoo.data.transforms import Augment
    from zoo.training.recipes import get_recipe

    folder, source = cifar_folder(work, args.images // 10, 1)
    print(f"small images: {source}, {args.images} training images in {folder}", flush=True)
    recipe = get_recipe("fast", "cifar10").replace(epochs=1, batch_size=128, ema=False, warmup_epochs=0, workers=2)
    aug = Augment(crop_pad=recipe.crop_pad, hflip=recipe.hflip, rand_augment=recipe.rand_augment)
    t0 = time.perf_counter()
    cached, _, _ = create_datasets("cifar10", str(folder), augment=aug)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached, _, data_info = create_datasets("cifar10", str(folder), augment=aug)
    again = time.perf_counter() - t0
    assert isinstance(cached, TensorImageDataset), "the CIFAR-10 folder was not cached"
    print(f"folder cache: built in {first:.1f} s, opened again in {again:.2f} s: {data_info.extra['image_cache'][0]}")
    in_memory = TensorImageDataset(cached.images.clone(), cached.targets, cached.classes, cached.mean, cached.std)
    os.environ["ZOO_IMAGE_CACHE_MB"] = "0"
    try:
        per_sample, _, _ = create_datasets("cifar10", str(folder), augment=aug)
    finally:
        del os.environ["ZOO_IMAGE_CACHE_MB"]
    base = zoo.create_model("resnet20", num_classes=10)
    sets = {"folder cache": cached, "in memory": in_memory, "per-sample": per_sample}
    rows += summarise("small: resnet20 training", len(cached), interleaved(sets, "in memory", args.rounds,
                      lambda ds: train_speed(ds, base, recipe)))  # fmt: skip
    info["small_images"] = source


def large_images(args, work: Path, rows: list) -> None:
    from torchvision.datasets import ImageFolder

    import zoo
    from zoo.data import ImageFolderDataset, scan_image_folder
    from zoo.data.transforms import Augment, folder_transforms

    folder = large_folder(work, work / "cifar10", args.large_images)
    cfg = zoo.create_model("resnet18").pretrained_cfg
    train_tf, _ = folder_transforms(cfg, Augment(hflip=0.5, rand_augment="rand-m9-mstd0.5-inc1"))
    classes, samples = scan_image_folder(folder)
    ours = ImageFolderDataset(samples, classes, train_tf)
    theirs = ImageFolder(str(folder), transform=train_tf)
    assert ours.samples == theirs.samples
    sets = {"zoo ImageFolderDataset": ours, "torchvision ImageFolder": theirs}
    rows += summarise("large: 224 px loader", len(samples), interleaved(sets, "torchvision ImageFolder", args.rounds,
                      lambda ds: loader_speed(ds, 64, args.workers)))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="small training images (default 5000)")
    parser.add_argument("--large-images", type=int, default=640, help="256x256 images (default 640)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the large images (default 2)")
    parser.add_argument("--quick", action="store_true", help="200 small and 64 large images, 1 round")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.large_images, args.rounds = 200, 64, 1
    info = machine_info()
    print_machine(info)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="zoo-folder-speed-") as tmp:
        work = Path(tmp)
        # A cache of our own: the benchmark neither reuses nor leaves behind the user's cached folders.
        os.environ["ZOO_DATA_DIR"] = str(work / "data")
        small_images(args, work, rows, info)
        large_images(args, work, rows)
    path = write_results("folder_speed" + ("-quick" if args.quick else ""), rows, info, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
