"""Lab10-5's own network: the course's VGG-16 for CIFAR-10, trained with the course's loop and recipe, then
tested once on all 10,000 CIFAR-10 test images.

    python benchmarks/course_vgg.py                                     # the lab's run: 1 epoch on 5,120 images
    python benchmarks/course_vgg.py --epochs 50 --train-images 50000    # the course's whole run (a GPU's job)
    python benchmarks/course_vgg.py --quick --out quick-results         # tiny settings: checks that the script runs

The network is the one docs/tutorials/lab10-5.ipynb builds: the course's configuration list
``[32, 32, "M", 64, 64, 128, 128, 128, "M", 256, 256, 256, 512, 512, 512, "M"]`` made into layers by zoo's VGG
builder (``zoo.models.vgg.make_features``), with the course's head (the 512 x 4 x 4 map flattened, then
4096 -> 4096 -> 10 with dropout) and initialisation. The recipe is the course's: images normalised with mean and
standard deviation 0.5, no augmentation, SGD at 0.005 with momentum 0.9, batch 512, ``StepLR(step_size=5,
gamma=0.9)`` stepped once an epoch, float32. The training images are a seeded random subset of the original
50,000; the test set is evaluated once, after the last epoch, for the report (it chooses nothing).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.data import create_datasets, subset  # noqa: E402
from zoo.evaluation import evaluate  # noqa: E402 - imported before the training, so that a broken import costs none
from zoo.models.vgg import make_features  # noqa: E402
from zoo.utils.scores import score_text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, print_machine, write_results  # noqa: E402

CFG = [32, 32, "M", 64, 64, 128, 128, 128, "M", 256, 256, 256, 512, 512, 512, "M"]
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the course's Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class CourseVGG(nn.Module):
    """The course's VGG class: ``features`` (512 maps of 4 x 4 for a 32 x 32 image), flattened, and its head."""

    def __init__(self, features: nn.Module, num_classes: int = 10) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(
            nn.Linear(512 * 4 * 4, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes),
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=5120, help="a seeded random subset (default 5,120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="256 training and 500 test images")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    if not (args.data_dir / "CIFAR10" / "cifar-10-batches-py" / "test_batch").is_file():
        print(f"CIFAR-10 is not in {args.data_dir}: nothing to measure (pass --data-dir)")
        return 0
    info = machine_info()
    print_machine(info)
    torch.manual_seed(args.seed)
    train_set, test_set, _ = create_datasets("cifar10", args.data_dir / "CIFAR10", normalization=HALF)
    train_images = 256 if args.quick else args.train_images
    train = subset(train_set, train_images, args.seed)
    test = subset(test_set, 500, 0) if args.quick else test_set
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the machine's GPU, where it has one
    model = CourseVGG(make_features(CFG)).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.9)
    order = torch.Generator().manual_seed(args.seed)
    losses: list[float] = []
    epoch_losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        steps = 0
        for idx in torch.randperm(len(train), generator=order).split(512):
            x = (train.images[idx].to(device).float() / 255 - 0.5) / 0.5
            optimizer.zero_grad()
            loss = criterion(model(x), train.targets[idx].to(device))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            steps += 1
        scheduler.step()
        epoch_losses.append(sum(losses[-steps:]) / steps)
        print(f"epoch {epoch + 1}/{args.epochs}: mean training loss {epoch_losses[-1]:.4f} over {steps} steps")
    train_s = time.perf_counter() - start
    results = evaluate(model, test)
    low, high = results["acc1_ci95"]
    print(f"test top-1 {score_text(results['acc1'], results['count'])}")
    shown = ["python", "benchmarks/course_vgg.py", "--epochs", str(args.epochs), "--train-images", str(train_images)]
    row = {
        "lab": "lab10-5",
        "run": "course-vgg16",
        "command": shlex.join(shown + (["--quick"] if args.quick else [])),
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "train_images": len(train),
        "epochs": args.epochs,
        "batch_size": 512,
        "steps": len(losses),
        "first_train_loss": round(losses[0], 4),
        "last_train_loss": round(losses[-1], 4),
        "train_loss_per_epoch": ", ".join(f"{v:.4f}" for v in epoch_losses),
        "test_images": results["count"],
        "top1": round(results["acc1"], 2),
        "top1_ci95_low": round(low, 2),
        "top1_ci95_high": round(high, 2),
        "chance_pct": round(results["chance"], 2),
        "top5": round(results["acc5"], 2),
        "train_s": round(train_s, 1),
        "img_s": round(len(train) * args.epochs / train_s, 1),
    }
    print(f"wrote {write_results('course_vgg' + ('-quick' if args.quick else ''), [row], info, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
