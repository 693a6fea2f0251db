"""Time-to-accuracy of resnet20 on the original CIFAR-10 (torchvision's python batches): when the test top-1
reaches 85, 90, 91 and 91.25 % (the ResNet paper's resnet20).

    python benchmarks/train_cifar.py --from-run RUN     # read a finished `zoo train` run folder (no training)
    python benchmarks/train_cifar.py                    # train: the bundled weights' command, about 100 minutes
    python benchmarks/train_cifar.py --quick            # 1 epoch on 1000 images: checks that the script runs

A full run is longer than the suite's budget, so the committed results come from the run that produced the
bundled ``resnet20.cifar10`` weights (``--from-run``): its metrics.csv holds the test top-1 and the training
time of every epoch and the wall-clock time at which each epoch's row was written. "train s" sums the epochs'
training time (no evaluation); "wall s" runs from the start of epoch 1 to the end of the target epoch's test
evaluation, start-up and data extraction excluded. The test set only measures here: nothing is chosen by it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.training.loggers import read_metrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (  # noqa: E402
    add_device_args,
    machine_info,
    print_machine,
    resolve_device,
    results_name,
    write_results,
)
from train_mnist import report, run_once  # noqa: E402

BATCHES = Path("CIFAR10") / "cifar-10-batches-py"
# The command of the bundled resnet20.cifar10 weights (the manifest's origin), after --data-dir.
BUNDLED = ["--epochs", "120", "--batch-size", "128", "--lr", "0.1", "--rand-augment", ""]


def time_to_targets(rows: list[dict], targets: list[float], start: float) -> list[dict]:
    """For each target, the first epoch whose test top-1 reaches it, the training time summed up to it and
    the wall time from ``start`` (None where the target was never reached)."""
    out = []
    for target in targets:
        k = next((i for i, r in enumerate(rows) if r["test_acc1"] >= target), None)
        out.append({
            "target_pct": target,
            "epoch_at_target": rows[k]["epoch"] if k is not None else None,
            "train_s_to_target": round(sum(r["epoch_time"] for r in rows[: k + 1]), 1) if k is not None else None,
            "wall_s_to_target": round(rows[k]["time"] - start, 1) if k is not None else None,
        })  # fmt: skip
    return out


def summarise_run(run: Path, targets: list[float]) -> list[dict]:
    """Time to each target test top-1 in a finished run folder."""
    rows = read_metrics(run / "metrics.csv")
    if not rows or rows[0].get("test_acc1") is None:
        raise SystemExit(f"{run / 'metrics.csv'} has no test top-1 column: run `zoo train` with a test split")
    record = json.loads((run / "run.json").read_text())
    totals = {"epochs": len(rows), "final_test_pct": rows[-1]["test_acc1"],
              "total_train_s": round(sum(r["epoch_time"] for r in rows), 1),
              "median_img_s": round(sorted(r["img_per_s"] for r in rows)[len(rows) // 2], 1)}  # fmt: skip
    head = {"model": record.get("architecture", "?"), "command": record.get("zoo_command", "")}
    start = rows[0]["time"] - rows[0]["epoch_time"]
    return [{**head, **hit, **totals} for hit in time_to_targets(rows, targets, start)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-run", type=Path, help="a finished run folder to read instead of training")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--targets", type=float, nargs="+", default=[85.0, 90.0, 91.0, 91.25])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 1000 images: checks that the script runs")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    add_device_args(parser, dtype=False)
    args, extra = parser.parse_known_args()
    device = resolve_device(args.device)
    info = machine_info()
    print_machine(info)
    if args.from_run is not None:
        rows = summarise_run(args.from_run, args.targets)
    else:
        batches = args.data_dir / BATCHES
        if not (batches / "test_batch").is_file():
            print(f"the original CIFAR-10 batches are not in {batches}: nothing to measure (pass --data-dir)")
            return 0
        extra = extra or BUNDLED
        if args.quick:
            extra, args.targets = ["--epochs", "1", "--train-subset", "1000", "--val-subset", "500"], [20.0]
        extra = [*extra, "--device", device.type]  # zoo train: fp16 AMP on CUDA, bf16 on a CPU that has it
        result = run_once("fast", batches.parent, args.targets[0], extra, model=args.model, dataset="cifar10")
        report([result], args.targets[0])
        curve = [{"epoch": e, "time": t, "test_acc1": a, "epoch_time": et} for e, t, a, et in result["curve"]]
        head = {"model": args.model, "command": result["command"]}
        totals = {"final_test_pct": result["final_acc"], "wall_s": round(result["wall_s"], 1)}
        # run_once's curve times already count from the process start
        rows = [{**head, **hit, **totals} for hit in time_to_targets(curve, args.targets, 0.0)]
    for r in rows:
        reached = (
            f"epoch {r['epoch_at_target']}, {r['wall_s_to_target']} s wall" if r["epoch_at_target"] else "not reached"
        )
        print(f"{r['model']}: test top-1 >= {r['target_pct']} %: {reached}")
    print(f"wrote {write_results(results_name('train_cifar', device, quick=args.quick), rows, info, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
