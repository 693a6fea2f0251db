"""Train the CIFAR-10 family (resnet20/32/44/56/110, vgg11_bn/13_bn/16_bn/19_bn with the CIFAR stem) at once on
one lent GPU, several ``zoo train`` processes side by side, and bring the runs back in pieces.

A lent GPU machine (the ``device`` tool) gets the working tree and at most 64 MiB a call, and gives back at
most 64 MiB a call in files of 16 MiB; the original CIFAR-10 batches are 178 MiB and the family's weights
about 230 MiB. So the data goes over in parts, one call each, the training is one call, and the runs come
back in 15 MiB parts over a few more calls, while the machine stays warm (30 s between calls)::

    # here, once: the data in 48 MiB parts under .gpu/ (add `/.gpu/` to .git/info/exclude)
    python scripts/cifar_family.py pack-data --data-dir ../shared/data/CIFAR10 --out .gpu
    # on the GPU machine, one call per part (carry: .gpu/parts.json and .gpu/cifar10.tar.partNN):
    python3 scripts/cifar_family.py stage --from .gpu
    # on the GPU machine, the training (about 8 minutes; prints what is left to fetch):
    PYTHONPATH=. python3 scripts/cifar_family.py train --budget-s 360 --out "$OUT"
    # on the GPU machine, until it says nothing is left:
    python3 scripts/cifar_family.py fetch --out "$OUT"
    # here: join the parts that came back and unpack the run folders
    python scripts/cifar_family.py unpack FILES_AT_1 FILES_AT_2 ... --to runs/gpu-family
    # with time left on the GPU: the trainer's overhead against a plain loop (mnist_cnn, resnet20), 2 minutes
    OUT="$OUT" PYTHON=python3 bash benchmarks/gpu_suite.sh overhead

``train`` checks the data (every part's SHA-256, then the official MD5 of every batch file), measures each
model's img/s with all of them running together (one short epoch on 5,000 images), gives each model as
many epochs (at most 200) as fit ``--budget-s`` at that speed, and runs them all at once: fp16 AMP,
channels_last, the images and their augmentation on the GPU (zoo's tensor loader). Each run keeps its last
epoch (the test set chooses nothing), and is interrupted with a resumable checkpoint if it overruns. The
summary (``summary.json``) gives per model the command, epochs, training seconds, median img/s and the test
top-1 of the last epoch; publish the runs afterwards with ``zoo publish RUN --name ARCH.cifar10``.

``--device cpu --quick`` rehearses every step here on the CPU in a minute or two (two small models, 1,000
images, one epoch), with the same parts and limits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("/tmp/zoo-cifar-family")
BATCHES = "cifar-10-batches-py"
# The official MD5 of each file of CIFAR-10's python version (torchvision checks the same values).
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
FAMILY = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
# Per model: the learning rate of SGD-Nesterov at batch 128 (VGG with batch norm takes half the ResNets' rate).
LR = {"vgg": 0.05, "resnet": 0.1}
# What one device call gives back: at most 8 files of 16 MiB, 64 MiB in all. Parts of 15 MiB leave room for
# parts.json and summary.json beside four of them.
OUT_FILES, OUT_TOTAL_MIB, PART_MIB = 8, 64, 15
MIB = 2**20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def _split(file: Path, out: Path, part_mib: int, prefix: str) -> list[dict]:
    """Cut ``file`` into ``prefix.partNN`` files of ``part_mib`` MiB in ``out``; their names, sizes and SHA-256."""
    parts = []
    with open(file, "rb") as f:
        while block := f.read(part_mib * MIB):
            path = out / f"{prefix}.part{len(parts):02d}"
            path.write_bytes(block)
            parts.append({"name": path.name, "size": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return parts


def _join(parts: list[Path], dest: Path) -> None:
    with open(dest, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, MIB)


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")  # no absolute paths, no '..', no links out of dest


# --------------------------------------------------------------------------------------------------- data


def pack_data(args: argparse.Namespace) -> int:
    """The CIFAR-10 batches as one tar in parts of ``--part-mib``, and parts.json to check them by."""
    src = args.data_dir / BATCHES if (args.data_dir / BATCHES).is_dir() else args.data_dir
    missing = [n for n in CIFAR10_MD5 if not (src / n).is_file()]
    if missing:
        raise SystemExit(f"{src} is not CIFAR-10's python version: {', '.join(missing)} missing")
    args.out.mkdir(parents=True, exist_ok=True)
    tar_path = args.out / "cifar10.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in CIFAR10_MD5:
            tar.add(src / name, arcname=f"{BATCHES}/{name}")
    parts = _split(tar_path, args.out, args.part_mib, "cifar10.tar")
    record = {"tar_sha256": _sha256(tar_path), "tar_size": tar_path.stat().st_size, "parts": parts}
    tar_path.unlink()
    (args.out / "parts.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(parts)} parts of at most {args.part_mib} MiB in {args.out}: carry parts.json and one part a call")
    return 0


def stage(args: argparse.Namespace) -> int:
    """Copy the carried data parts (checked against parts.json) into the work folder; say what is missing."""
    record = json.loads((args.from_dir / "parts.json").read_text())
    store = args.work / "data-parts"
    store.mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.from_dir / "parts.json", store / "parts.json")
    for part in record["parts"]:
        carried, kept = args.from_dir / part["name"], store / part["name"]
        if carried.is_file() and not (kept.is_file() and _sha256(kept) == part["sha256"]):
            if _sha256(carried) != part["sha256"]:
                raise SystemExit(f"{carried}: SHA-256 differs from parts.json (a damaged transfer): carry it again")
            shutil.copy2(carried, kept)
    have = [p["name"] for p in record["parts"] if (store / p["name"]).is_file()]
    missing = [p["name"] for p in record["parts"] if p["name"] not in have]
    print(f"staged {len(have)} of {len(record['parts'])} parts in {store}; missing: {', '.join(missing) or 'none'}")
    return 0


def _data_folder(work: Path) -> Path:
    """Join and check the staged parts, unpack them once; the folder holding cifar-10-batches-py."""
    data = work / "shared" / "data" / "CIFAR10"  # laid out as beside a checkout, so commands read as here
    if all((data / BATCHES / n).is_file() for n in CIFAR10_MD5):
        return data
    store = work / "data-parts"
    record = json.loads((store / "parts.json").read_text())
    missing = [p["name"] for p in record["parts"] if not (store / p["name"]).is_file()]
    if missing:
        raise SystemExit(f"data parts not staged yet: {', '.join(missing)} (run `stage` with each carried)")
    tar_path = work / "cifar10.tar"
    _join([store / p["name"] for p in record["parts"]], tar_path)
    if _sha256(tar_path) != record["tar_sha256"]:
        raise SystemExit("the joined data differs from what was packed (SHA-256): stage the parts again")
    _safe_extract(tar_path, data)
    tar_path.unlink()
    for name, md5 in CIFAR10_MD5.items():
        if hashlib.md5((data / BATCHES / name).read_bytes()).hexdigest() != md5:
            raise SystemExit(f"{data / BATCHES / name}: not the official CIFAR-10 file (MD5)")
    return data


# --------------------------------------------------------------------------------------------------- training


def _command(model: str, data: Path, out: Path, device: str, epochs: int, extra: list[str]) -> list[str]:
    """``zoo train`` for ``model``, with paths relative to the working folder's ``main/`` (where it runs): the
    run records ``--data-dir ../shared/data/CIFAR10 --output runs/...`` as a run in a checkout would."""
    family = "vgg" if model.startswith("vgg") else "resnet"
    here = out.parent.parent  # <work>/main
    cmd = [sys.executable, "-m", "zoo", "train", model, "--dataset", "cifar10", "--data-dir",
           os.path.relpath(data, here), "--epochs", str(epochs), "--batch-size", "128", "--lr", str(LR[family]),
           "--rand-augment", "", "--device", device, "--output", os.path.relpath(out, here), *extra]  # fmt: skip
    return cmd + (["--stem", "cifar"] if family == "vgg" else [])


def _run_all(cmds: dict[str, list[str]], logs: Path, limit_s: float, cwd: Path) -> dict[str, int | None]:
    """Start every command at once; after ``limit_s`` interrupt what still runs (SIGINT: a resumable save)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = {}
    for model, cmd in cmds.items():
        with open(logs / f"{model}.log", "w") as log:
            procs[model] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    deadline = time.time() + limit_s
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(2)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    end = time.time() + 60
    for p in procs.values():
        try:
            p.wait(timeout=max(1.0, end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
    return {m: p.returncode for m, p in procs.items()}


def _metrics(run: Path) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from zoo.training.loggers import read_metrics

    return read_metrics(run / "metrics.csv") if (run / "metrics.csv").is_file() else []


def train(args: argparse.Namespace) -> int:
    """Calibrate, then train the family at once; pack the runs and hand out the first parts."""
    if args.quick:
        args.models = args.models or ["resnet20", "vgg11_bn"]
    models = args.models or FAMILY
    data = _data_folder(args.work) if args.data_dir is None else args.data_dir
    runs = args.work / "main" / "runs"
    shutil.rmtree(runs, ignore_errors=True)  # a rerun starts over: its runs are packed anew
    runs.mkdir(parents=True)
    small = ["--train-subset", str(1000 if args.quick else 5000), "--val-subset", "500"]
    t0 = time.time()
    calib = {m: _command(m, data, runs / f"calibrate-{m}", args.device, 1, small) for m in models}
    codes = _run_all(calib, runs / "calibrate-logs", args.budget_s, runs.parent)
    speed = {}
    for m in models:
        rows = _metrics(runs / f"calibrate-{m}")
        if codes[m] != 0 or not rows:
            raise SystemExit(f"{m}: the calibration run failed (exit {codes[m]}); see {runs / 'calibrate-logs'}")
        speed[m] = rows[-1]["img_per_s"]
        shutil.rmtree(runs / f"calibrate-{m}", ignore_errors=True)
    calibrate_s = time.time() - t0
    # All models train together; the slowest sets the pace, and those that finish early hand the GPU over.
    per_image_s = {m: 1.0 / speed[m] for m in models}
    train_images = 1000 if args.quick else 50_000
    epochs = {m: max(1, min(args.max_epochs, int(args.budget_s / (per_image_s[m] * train_images * 1.08))))
              for m in models}  # fmt: skip
    if args.quick:
        epochs = dict.fromkeys(models, 1)
    extra = small[:2] if args.quick else []
    cmds = {m: _command(m, data, runs / f"{m}.cifar10", args.device, epochs[m], extra) for m in models}
    print(f"calibrated in {calibrate_s:.0f} s: " + ", ".join(f"{m} {speed[m]:.0f} img/s -> {epochs[m]} epochs"
                                                              for m in models), flush=True)  # fmt: skip
    t1 = time.time()
    codes = _run_all(cmds, runs / "logs", args.budget_s * 1.5, runs.parent)
    wall = time.time() - t1
    summary = {"device": args.device, "budget_s": args.budget_s, "calibrate_s": round(calibrate_s, 1),
               "wall_s": round(wall, 1), "models": {}}  # fmt: skip
    for m in models:
        rows = _metrics(runs / f"{m}.cifar10")
        run_json = runs / f"{m}.cifar10" / "run.json"
        status = json.loads(run_json.read_text()).get("status") if run_json.is_file() else "missing"
        summary["models"][m] = {
            "command": shlex.join(["zoo", *cmds[m][3:]]),
            "exit": codes[m], "status": status, "epochs_planned": epochs[m], "epochs_done": len(rows),
            "train_s": round(sum(r["epoch_time"] for r in rows), 1),
            "median_img_s": round(sorted(r["img_per_s"] for r in rows)[len(rows) // 2], 1) if rows else None,
            "last_epoch_test_top1": rows[-1]["test_acc1"] if rows else None,
        }  # fmt: skip
        print(f"{m:<10} {status:<12} {len(rows):>3}/{epochs[m]} epochs  test top-1 "
              f"{summary['models'][m]['last_epoch_test_top1']}", flush=True)  # fmt: skip
    (runs / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _pack_runs(runs, args.work / "out-parts", models)
    return fetch(args, first=True)


def _pack_runs(runs: Path, parts_dir: Path, models: list[str]) -> None:
    """The run folders without their resume checkpoints, as one tar in parts of 15 MiB."""
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    tar_path = parts_dir.parent / "runs.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(runs / "summary.json", arcname="summary.json")
        tar.add(runs / "logs", arcname="logs")
        for m in models:
            run = runs / f"{m}.cifar10"
            for f in sorted(run.iterdir()) if run.is_dir() else []:
                if f.is_file() and f.name != "last.pt":
                    tar.add(f, arcname=f"{m}.cifar10/{f.name}")
    parts = _split(tar_path, parts_dir, PART_MIB, "runs.tar")
    record = {"tar_sha256": _sha256(tar_path), "parts": parts, "fetched": []}
    tar_path.unlink()
    (parts_dir / "parts.json").write_text(json.dumps(record, indent=1) + "\n")


def fetch(args: argparse.Namespace, first: bool = False) -> int:
    """Copy the next parts of the packed runs (and parts.json, summary) into ``--out``, within one call's limits."""
    parts_dir = args.work / "out-parts"
    record = json.loads((parts_dir / "parts.json").read_text())
    todo = [p for p in record["parts"] if p["name"] not in record["fetched"]]
    args.out.mkdir(parents=True, exist_ok=True)
    room_files, room_bytes = OUT_FILES - 1, (OUT_TOTAL_MIB - 1) * MIB  # parts.json goes too
    if first and (args.work / "main" / "runs" / "summary.json").is_file():
        shutil.copy2(args.work / "main" / "runs" / "summary.json", args.out / "summary.json")
        room_files -= 1
    sent = []
    for p in todo:
        if len(sent) == room_files or p["size"] > room_bytes:
            break
        shutil.copy2(parts_dir / p["name"], args.out / p["name"])
        sent.append(p["name"])
        room_bytes -= p["size"]
    record["fetched"] += sent
    (parts_dir / "parts.json").write_text(json.dumps(record, indent=1) + "\n")
    shutil.copy2(parts_dir / "parts.json", args.out / "parts.json")
    left = len(record["parts"]) - len(record["fetched"])
    print(f"handed out {', '.join(sent) or 'nothing'}; {left} part(s) left" + (": call fetch again" if left else ""))
    return 0


def unpack(args: argparse.Namespace) -> int:
    """Join the parts that came back (from any number of folders), check them, and unpack the run folders."""
    found = {p.name: p for folder in args.folders for p in Path(folder).glob("runs.tar.part*")}
    record = json.loads(max((Path(f) / "parts.json" for f in args.folders if (Path(f) / "parts.json").is_file()),
                            key=lambda p: len(json.loads(p.read_text())["fetched"])).read_text())  # fmt: skip
    missing = [p["name"] for p in record["parts"] if p["name"] not in found]
    if missing:
        raise SystemExit(f"parts missing: {', '.join(missing)} (fetch them from the GPU machine)")
    for p in record["parts"]:
        if _sha256(found[p["name"]]) != p["sha256"]:
            raise SystemExit(f"{found[p['name']]}: SHA-256 differs from parts.json")
    args.to.mkdir(parents=True, exist_ok=True)
    tar_path = args.to / "runs.tar"
    _join([found[p["name"]] for p in record["parts"]], tar_path)
    if _sha256(tar_path) != record["tar_sha256"]:
        raise SystemExit("the joined parts differ from what was packed (SHA-256)")
    _safe_extract(tar_path, args.to)
    tar_path.unlink()
    print(f"unpacked into {args.to}: " + ", ".join(sorted(p.name for p in args.to.iterdir() if p.is_dir())))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("pack-data", help="here: the CIFAR-10 batches in parts to carry")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "CIFAR10")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu")
    p.add_argument("--part-mib", type=int, default=48)
    p.set_defaults(func=pack_data)
    p = sub.add_parser("stage", help="there: keep the carried data parts")
    p.add_argument("--from", dest="from_dir", type=Path, default=ROOT / ".gpu")
    p.set_defaults(func=stage)
    p = sub.add_parser("train", help="there: calibrate, train the family at once, hand out the first parts")
    p.add_argument("--models", nargs="+", help=f"default: {' '.join(FAMILY)}")
    p.add_argument("--budget-s", type=float, default=360, help="seconds of training for the family (default 360)")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data-dir", type=Path, help="a folder holding cifar-10-batches-py (default: the staged parts)")
    p.add_argument("--quick", action="store_true", help="rehearsal: resnet20 and vgg11_bn, 1,000 images, 1 epoch")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    p.set_defaults(func=train)
    p = sub.add_parser("fetch", help="there: hand out the next parts of the runs")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    p.set_defaults(func=fetch)
    p = sub.add_parser("unpack", help="here: join the parts and unpack the run folders")
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--to", type=Path, default=ROOT / "runs" / "gpu-family")
    p.set_defaults(func=unpack)
    for p in sub.choices.values():
        p.add_argument("--work", type=Path, default=WORK, help=f"the working folder (default {WORK})")
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
