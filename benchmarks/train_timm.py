"""Training throughput: ``zoo train`` against timm's own ``train.py`` on the same model, images and settings.

    python benchmarks/train_timm.py --timm-train ~/src/pytorch-image-models/train.py
    python benchmarks/train_timm.py --timm-train PATH --quick   # 1 small epoch each: checks that it runs

timm's ``train.py`` is a script of timm's repository, not part of the timm package, so it is passed in
(``--timm-train`` or ``$TIMM_TRAIN_PY``); without it the script says so and measures nothing. Both sides
train the same zoo model (registered in timm's registry as ``zoo_<model>``, so timm's script builds it with
``timm.create_model``) on the same image folder: ``--per-class`` training images of each class of the real
CIFAR-10 archive, ``train/`` and ``test/``, as a user's folder of small photos. Settings match: SGD-Nesterov
lr 0.1, weight decay 5e-4, cosine, label smoothing 0.1, batch 128, channels_last, flips, no EMA, mixup or
RandAugment, two data workers where the library uses workers. Each side runs as its own fresh process; the
rate is that of the last epoch (the first warms up), from zoo's metrics.csv and timm's end-of-epoch log line
(images / mean time per update). zoo decodes a folder of small images once into a uint8 cache and
augments whole batches; timm decodes and transforms every image in its workers every epoch: that is the
difference measured, so the process wall time (start-up and zoo's one-time decode included) is reported too.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (  # noqa: E402
    add_device_args,
    machine_info,
    print_machine,
    resolve_device,
    results_name,
    write_results,
)

ARCHIVE = Path("CIFAR10") / "cifar10-jpg.tar.gz"
# timm's end-of-epoch line: "Train: 1 [  38/39 (100%)] ... Time: 0.2s,  600.0/s  (0.21s,  590.1/s) ..."
_TIMM_LINE = re.compile(r"Train: (\d+) \[\s*(\d+)/(\d+) .*?\(\s*[\d.]+s,\s*([\d.]+)/s\)")


def register_and_run_timm(train_py: str, model: str, argv: list[str]) -> None:
    """In this process: register zoo's ``model`` as timm's ``zoo_<model>`` and run timm's train.py with argv."""
    from timm.models import register_model

    import zoo

    def build(pretrained: bool = False, **kwargs: object) -> object:
        # timm's script passes its generic options (drop_rate=0.0, pretrained_cfg=None ...); zoo's model
        # takes the class count and channels, which is all this benchmark sets.
        keep = {k: kwargs[k] for k in ("num_classes", "in_chans") if kwargs.get(k) is not None}
        return zoo.create_model(model, **keep)

    build.__name__ = f"zoo_{model}"
    register_model(build)
    sys.argv = [train_py, *argv]
    runpy.run_path(train_py, run_name="__main__")


def make_folder(archive: Path, dest: Path, per_class: int, test_per_class: int) -> Path:
    """``train/`` and ``test/`` of the first images of each class, linked from the extracted archive."""
    from zoo.data.archive import extract_archive

    source = extract_archive(archive, dest / "extracted")
    folder = dest / "folder"
    for split, count in (("train", per_class), ("test", test_per_class)):
        for class_dir in sorted((source / split).iterdir()):
            out = folder / split / class_dir.name
            out.mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[:count]:
                os.symlink(f, out / f.name)
    return folder


def run_zoo(model: str, folder: Path, out: Path, epochs: int, batch: int, device: str) -> dict:
    cmd = [sys.executable, "-m", "zoo", "train", model, "--dataset", f"imagefolder:{folder}",
           "--epochs", str(epochs), "--batch-size", str(batch), "--opt", "sgd", "--lr", "0.1",
           "--weight-decay", "5e-4", "--sched", "cosine", "--warmup-epochs", "0", "--label-smoothing", "0.1",
           "--no-ema", "--mixup", "0", "--cutmix", "0", "--rand-augment", "", "--crop-pad", "0",
           "--hflip", "0.5", "--channels-last", "--workers", "2", "--device", device, "--output", str(out)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    from zoo.training.loggers import read_metrics

    rows = read_metrics(out / "metrics.csv")
    return {"img_s": rows[-1]["img_per_s"], "wall_s": wall, "epochs": len(rows)}


def run_timm(train_py: Path, model: str, folder: Path, out: Path, epochs: int, batch: int, device: str) -> dict:
    argv = [str(folder), "--dataset", "", "--train-split", "train", "--val-split", "test", "--model",
            f"zoo_{model}", "--num-classes", "10", "--input-size", "3", "32", "32", "--epochs", str(epochs),
            "-b", str(batch), "--opt", "sgd", "--lr", "0.1", "--weight-decay", "5e-4", "--sched", "cosine",
            "--warmup-epochs", "0", "--smoothing", "0.1", "--scale", "1", "1", "--ratio", "1", "1",
            "--hflip", "0.5", "--channels-last", "--device", device, "-j", "2",
            "--seed", "42", "--log-interval", "1000", "--checkpoint-hist", "1", "--output", str(out)]  # fmt: skip
    # timm's prefetcher is CUDA-only; on a GPU both sides train in fp16 AMP (zoo train's default there)
    argv += ["--amp"] if device == "cuda" else ["--no-prefetcher"]
    cmd = [sys.executable, __file__, "--timm-child", str(train_py), model, *argv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"timm's train.py failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    last = {}  # epoch -> rate of its last logged update
    for m in _TIMM_LINE.finditer(proc.stdout + proc.stderr):
        if int(m.group(2)) + 1 == int(m.group(3)):
            last[int(m.group(1))] = float(m.group(4))
    if len(last) != epochs:
        raise SystemExit(f"found {len(last)} of {epochs} end-of-epoch lines in timm's log:\n{proc.stderr[-3000:]}")
    return {"img_s": last[max(last)], "wall_s": wall, "epochs": len(last)}


def main() -> int:
    if len(sys.argv) > 3 and sys.argv[1] == "--timm-child":
        register_and_run_timm(sys.argv[2], sys.argv[3], sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm-train", type=Path, default=os.environ.get("TIMM_TRAIN_PY"),
                        help="timm's train.py (from pytorch-image-models); default $TIMM_TRAIN_PY")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--per-class", type=int, default=500, help="training images per class (default 500)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="zoo and timm runs, alternating which goes first")
    parser.add_argument("--quick", action="store_true", help="one round of 1 epoch on 60 images a class")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    add_device_args(parser, dtype=False)
    args = parser.parse_args()
    device = resolve_device(args.device)
    info = machine_info()
    print_machine(info)
    archive = args.data_dir / ARCHIVE
    if args.timm_train is None or not Path(args.timm_train).is_file():
        print(f"timm's train.py not given or not found ({args.timm_train}): pass --timm-train; nothing measured")
        return 0
    if not archive.is_file():
        print(f"the real CIFAR-10 archive is not at {archive}: nothing to measure (pass --data-dir)")
        return 0
    if args.quick:
        args.per_class, args.epochs, args.rounds = 60, 1, 1
    import timm

    info["timm"] = timm.__version__
    with tempfile.TemporaryDirectory(prefix="zoo-train-timm-") as tmp:
        folder = make_folder(archive, Path(tmp), args.per_class, 100)
        results: dict[str, list[dict]] = {"zoo": [], "timm": []}
        for r in range(args.rounds):
            for side in ("zoo", "timm") if r % 2 == 0 else ("timm", "zoo"):
                out = Path(tmp) / f"{side}-{r}"
                out.mkdir()
                if side == "zoo":
                    res = run_zoo(args.model, folder, out, args.epochs, args.batch_size, device.type)
                else:
                    res = run_timm(Path(args.timm_train).resolve(), args.model, folder, out, args.epochs,
                                   args.batch_size, device.type)  # fmt: skip
                print(f"round {r + 1} {side}: {res['img_s']:.1f} img/s (last epoch), {res['wall_s']:.1f} s wall")
                results[side].append(res)
                shutil.rmtree(out)
    med = {s: {k: statistics.median(x[k] for x in v) for k in ("img_s", "wall_s")} for s, v in results.items()}
    row = {
        "model": args.model, "train_images": 10 * args.per_class, "epochs": args.epochs,
        "batch_size": args.batch_size, "rounds": args.rounds,
        "zoo_img_s": round(med["zoo"]["img_s"], 1), "timm_img_s": round(med["timm"]["img_s"], 1),
        "zoo_over_timm_img_s": round(med["zoo"]["img_s"] / med["timm"]["img_s"], 3),
        "zoo_wall_s": round(med["zoo"]["wall_s"], 1), "timm_wall_s": round(med["timm"]["wall_s"], 1),
        "zoo_over_timm_wall": round(med["zoo"]["wall_s"] / med["timm"]["wall_s"], 3),
    }  # fmt: skip
    print(f"{args.model}: zoo {row['zoo_img_s']} img/s, timm train.py {row['timm_img_s']} img/s "
          f"(zoo/timm {row['zoo_over_timm_img_s']}); wall {row['zoo_wall_s']} s against "
          f"{row['timm_wall_s']} s")  # fmt: skip
    print(f"wrote {write_results(results_name('train_timm', device, quick=args.quick), [row], info, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
