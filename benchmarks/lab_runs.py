"""The tutorials' own runs on the real data: the course's recipes for a few epochs (Lab10-5, Lab10-6)
and training from scratch against fine-tuning on a folder of real photos, ../shared/data/hymenoptera (Lab10-4).

    python benchmarks/lab_runs.py                                   # all five runs (tens of minutes on 2 cores)
    python benchmarks/lab_runs.py --only lab10-4                    # one lab's runs
    python benchmarks/lab_runs.py --plots docs/assets/tutorials     # also draw the curves the lab pages show
    python benchmarks/lab_runs.py --quick                           # one tiny run: checks that the script runs

Each run is a fresh ``zoo train`` process exactly as the lab page prints it; the results file keeps its
command (data paths relative to this checkout), the top-1 after every epoch, the epoch it kept and its
training time, and the lab pages render their tables and figures from it. The course's runs test on all
10,000 CIFAR-10 test images after every epoch and keep the last; so do the folder runs, on the 153 photos of
the folder's val/, which zoo takes as its test split (nothing is held out of train/ to choose an epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.training.loggers import plot_curves, read_metrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, print_machine, write_results  # noqa: E402

PHOTOS = Path("hymenoptera")  # Lab10-4's photos: train/ and val/, ants and bees
BATCHES = Path("CIFAR10") / "cifar-10-batches-py"

# (lab, name, zoo train arguments after the architecture; "{cifar}" and "{photos}" are filled in)
RUNS: list[tuple[str, str, list[str]]] = [
    ("lab10-4", "scratch", ["resnet20", "--dataset", "imagefolder:{photos}", "--epochs", "20"]),
    ("lab10-4", "finetuned", ["resnet20", "--pretrained", "--dataset", "imagefolder:{photos}", "--epochs", "20"]),
    ("lab10-5", "vgg11-seed", ["vgg11", "--stem", "cifar", "--dataset", "cifar10", "--data-dir", "{cifar}",
                               "--recipe", "seed-vgg-cifar", "--epochs", "3", "--train-subset", "20000"]),
    ("lab10-5", "vgg11_bn-seed", ["vgg11_bn", "--stem", "cifar", "--dataset", "cifar10", "--data-dir", "{cifar}",
                                  "--recipe", "seed-vgg-cifar", "--epochs", "3", "--train-subset", "20000"]),
    ("lab10-6", "resnet20-seed", ["resnet20", "--dataset", "cifar10", "--data-dir", "{cifar}",
                                  "--recipe", "seed-resnet-cifar", "--epochs", "5"]),
]  # fmt: skip
PLOTTED = {"scratch", "finetuned", "vgg11_bn-seed", "resnet20-seed"}  # the runs whose curves the lab pages show
QUICK = ["--epochs", "1", "--train-subset", "256", "--val-subset", "128"]


def train(argv: list[str], out: Path) -> tuple[list[dict], dict, float]:
    """One ``zoo train`` process: its metrics rows, run.json and wall time."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "zoo", "train", *argv, "--output", str(out)], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"zoo train {shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return read_metrics(out / "metrics.csv"), json.loads((out / "run.json").read_text()), wall


def _curve(rows: list[dict], key: str) -> str | None:
    values = [r.get(key) for r in rows]
    return None if any(v is None for v in values) else ", ".join(f"{v:.2f}" for v in values)


def summarise(lab: str, name: str, shown: list[str], rows: list[dict], run: dict, wall: float) -> dict:
    """A results row: the command as the lab prints it and the run's curve."""
    split = "test" if rows[0].get("test_acc1") is not None else "val"
    kept = run.get("best_epoch") or len(rows)
    return {
        "lab": lab,
        "run": name,
        "command": shlex.join(["zoo", "train", *shown]),
        "train_images": run.get("train_images"),  # zoo train records it; a bare fit() run does not
        "epochs": len(rows),
        "measured_on": split,
        "measured_images": int(rows[-1].get(f"{split}_count") or 0) or None,  # the images each top-1 rests on
        "train_top1_per_epoch": _curve(rows, "train_acc1"),
        "top1_per_epoch": _curve(rows, f"{split}_acc1"),
        "kept_epoch": kept,
        "kept_top1": round(rows[kept - 1][f"{split}_acc1"], 2),
        "last_top1": round(rows[-1][f"{split}_acc1"], 2),
        "first_train_loss": round(rows[0]["train_loss"], 4),
        "last_train_loss": round(rows[-1]["train_loss"], 4),
        "train_s": round(sum(r["epoch_time"] for r in rows), 1),
        "median_img_s": round(sorted(r["img_per_s"] for r in rows)[len(rows) // 2], 1),
        "wall_s": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", nargs="+", metavar="LAB_OR_RUN", help="the labs or runs to make (default: all)")
    parser.add_argument("--plots", type=Path, help="write the curves the lab pages show, <lab>-<run>-curves.png, here")
    parser.add_argument("--quick", action="store_true", help="the first run only, 1 epoch, a few hundred images")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    runs = [r for r in RUNS if not args.only or r[0] in args.only or r[1] in args.only]
    if args.quick:  # every run is the same code with other arguments, and the lab pages run each lab's commands
        runs = runs[:1]
    if not runs:
        parser.error(f"--only {' '.join(args.only)} names no run; the runs: {', '.join(r[1] for r in RUNS)}")
    needs = {PHOTOS / "val" if lab == "lab10-4" else BATCHES / "test_batch" for lab, _, _ in runs}
    missing = [str(args.data_dir / p) for p in needs if not (args.data_dir / p).exists()]
    if missing:
        print(f"the data is not in {args.data_dir} ({', '.join(missing)}): nothing to measure (pass --data-dir)")
        return 0
    info = machine_info()
    print_machine(info)
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-labs-") as tmp:
        photos = args.data_dir / PHOTOS
        cifar = args.data_dir / BATCHES.parent
        for lab, name, template in runs:
            argv = [a.replace("{photos}", str(photos)).replace("{cifar}", str(cifar)) for a in template]
            argv += QUICK if args.quick else []
            shown = [a.replace("{photos}", os.path.relpath(photos, ROOT)) for a in template]
            shown = [a.replace("{cifar}", os.path.relpath(cifar, ROOT)) for a in shown]
            out = Path(tmp) / name
            rows, run, wall = train(argv, out)
            row = summarise(lab, name, shown, rows, run, wall)
            print(f"{lab} {name}: {row['measured_on']} top-1 per epoch {row['top1_per_epoch']}; "
                  f"kept epoch {row['kept_epoch']}; {row['train_s']} s of training")  # fmt: skip
            results.append(row)
            if args.plots and not args.quick and name in PLOTTED:
                args.plots.mkdir(parents=True, exist_ok=True)
                plot_curves(rows, args.plots / f"{lab}-{name}-curves.png", title=row["command"].split(" --data-dir")[0])
            shutil.rmtree(out, ignore_errors=True)
    name = "lab_runs" + ("-quick" if args.quick else "")
    if args.only and not args.quick:  # keep the other labs' rows of an earlier full run
        previous = (args.out or ROOT / "benchmarks" / "results") / "lab_runs.json"
        if previous.is_file():
            done = {(r["lab"], r["run"]) for r in results}
            before = json.loads(previous.read_text())
            # Rows measured at different times: each keeps the machine and date it was measured on.
            old = [{**r, "machine": r.get("machine", before["machine"])} for r in before["rows"]
                   if (r["lab"], r["run"]) not in done]  # fmt: skip
            order = [(lab, run) for lab, run, _ in RUNS]
            results = sorted(old + [{**r, "machine": info} for r in results],
                             key=lambda r: order.index((r["lab"], r["run"])))  # fmt: skip
    print(f"wrote {write_results(name, results, info, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
