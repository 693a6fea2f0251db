"""The papers' architecture tables, rendered from zoo's own config tables (used by docs/hooks.py).

* VGG's Table 1 (configurations A–E) from ``zoo.models.vgg.VGG_CONFIGS``;
* ResNet's Table 1 (stage layout per depth) from ``zoo.models.resnet.RESNET_DEPTHS``;
* the CIFAR ResNets of section 4.2 from the registered ``resnet20 ... resnet1202`` models;
* zoo's CIFAR-10 weights beside the papers' and a public CIFAR zoo's numbers, from the manifest and
  ``cifar10_references.json``.

``models.md`` holds placeholders (``<!-- zoo:vgg-table -->`` ...) that the hook replaces at build time, so
a change to a config table shows on the site without anyone copying it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import bench_charts


def _layer(spec: object) -> str:
    if spec == "LRN":
        return "LRN"
    if isinstance(spec, (tuple, list)):
        return f"conv{spec[1]}-{spec[0]}"
    return f"conv3-{spec}"


def vgg_table() -> str:
    """VGG Table 1: one column per configuration, stages separated by max-pool rows."""
    from zoo.models.vgg import VGG_CONFIGS

    names = list(VGG_CONFIGS)
    stages = {}
    for name, cfg in VGG_CONFIGS.items():
        groups: list[list[str]] = [[]]
        for spec in cfg:
            if spec == "M":
                groups.append([])
            else:
                groups[-1].append(_layer(spec))
        stages[name] = [g for g in groups if g]
    depth = {n: sum(1 for s in VGG_CONFIGS[n] if s not in ("M", "LRN")) + 3 for n in names}
    lines = [
        "| " + " | ".join(names) + " |",
        "|" + "|".join(":-:" for _ in names) + "|",
        "| " + " | ".join(f"**{depth[n]} weight layers**" for n in names) + " |",
        "| " + " | ".join("input (224 × 224 RGB image)" for _ in names) + " |",
    ]
    for i in range(max(len(s) for s in stages.values())):
        rows = max(len(stages[n][i]) for n in names)
        for j in range(rows):
            cells = [stages[n][i][j] if j < len(stages[n][i]) else "" for n in names]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("| " + " | ".join("maxpool" for _ in names) + " |")
    for head in ("FC-4096", "FC-4096", "FC-1000", "soft-max"):
        lines.append("| " + " | ".join(head for _ in names) + " |")
    return "\n".join(lines) + "\n"


def resnet_table() -> str:
    """ResNet Table 1: the stage layout of each depth, with output sizes for a 224 × 224 input."""
    from zoo.models.resnet import RESNET_DEPTHS

    depths = list(RESNET_DEPTHS)
    lines = [
        "| stage | output | " + " | ".join(f"{d}-layer" for d in depths) + " |",
        "|---|:-:|" + "|".join(":-:" for _ in depths) + "|",
        "| conv1 | 112 × 112 | " + " | ".join("7×7, 64, stride 2" for _ in depths) + " |",
        "| conv2_x | 56 × 56 | " + " | ".join("3×3 max pool, stride 2" for _ in depths) + " |",
    ]
    for stage, (size, width) in enumerate(((56, 64), (28, 128), (14, 256), (7, 512))):
        cells = []
        for d in depths:
            block, layers = RESNET_DEPTHS[d]
            if block.expansion == 1:
                inner = f"[3×3, {width}; 3×3, {width}]"
            else:
                inner = f"[1×1, {width}; 3×3, {width}; 1×1, {width * block.expansion}]"
            cells.append(f"{inner} × {layers[stage]}")
        label = f"| conv{stage + 2}_x | {size} × {size} |" if stage else "| | |"  # conv2_x starts with the pool
        lines.append(label + " " + " | ".join(cells) + " |")
    lines.append("| | 1 × 1 | " + " | ".join("average pool, 1000-d fc, softmax" for _ in depths) + " |")
    return "\n".join(lines) + "\n"


def cifar_resnet_table() -> str:
    """Section 4.2's CIFAR networks: n, depth and parameters of every registered one."""
    import torch

    import zoo
    from zoo.models import CifarResNet

    lines = ["| model | n | layers | stages (16, 32, 64 filters; 32², 16², 8²) | parameters |", "|---|--:|--:|---|--:|"]
    for name in zoo.list_models("resnet*"):
        with torch.device("meta"):  # shapes only
            model = zoo.create_model(name)
        if not isinstance(model, CifarResNet):
            continue
        n = (model.depth - 2) // 6
        params = sum(p.numel() for p in model.parameters())
        lines.append(f"| `{name}` | {n} | {model.depth} | 3 × {n} basic blocks of two 3×3 convolutions | {params:,} |")
    return "\n".join(lines) + "\n"


def cifar10_results() -> str:
    """zoo's CIFAR-10 weights beside the ResNet paper's and a public CIFAR zoo's top-1, one row per network;
    zoo's numbers come from the manifest, the others from ``docs/cifar10_references.json``."""
    from zoo.pretrained import manifest

    refs = json.loads((Path(__file__).resolve().parent / "cifar10_references.json").read_text(encoding="utf-8"))
    src = refs["sources"]

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f} %"

    lines = [
        f"| network | zoo weights | zoo top-1 | trained | [ResNet paper]({src['paper']['url']}) | "
        f"[{src['chenyaofo']['title']}]({src['chenyaofo']['url']}) |",
        "|---|---|--:|---|--:|--:|",
    ]
    for arch, ref in refs["top1"].items():
        entry = manifest.get_entry(arch, "cifar10") if f"{arch}.cifar10" in manifest.weight_names() else None
        if entry is None:
            lines.append(f"| `{arch}` | none yet | — | — | {pct(ref['paper'])} | {pct(ref['chenyaofo'])} |")
            continue
        metrics, origin = entry.metrics or {}, entry.origin or {}
        on = metrics.get("eval_set", "test set")
        seconds = origin.get("train_seconds")
        trained = f"{origin.get('epochs', '?')} epochs" + (f", {seconds / 60:.0f} min" if seconds else "")
        device = str(origin.get("device") or "")
        trained += f" on the {'GPU' if device.startswith('cuda') else device.upper()}" if device else ""
        trained += " (from the JPEG files)" if "jpg" in str(origin.get("command", "")) else ""
        top1 = f"**{pct(metrics.get('top1'))}** ({on})"
        lines.append(f"| `{arch}` | `{arch}.cifar10` ({entry.status}) | {top1} | {trained} | {pct(ref['paper'])} | "
                     f"{pct(ref['chenyaofo'])} |")  # fmt: skip
    notes = f"ResNet paper: {src['paper']['note']}. {src['chenyaofo']['title']}: {src['chenyaofo']['note']}."
    return "\n".join(lines) + f"\n\nAll on the CIFAR-10 test set. {notes}\n"


RUNS = Path(__file__).resolve().parent / "runs"


def run_curve(name: str) -> str:
    """A training run's record (``docs/runs/<name>/metrics.csv``, copied from its run folder): test top-1 and
    time at chosen epochs, and the totals."""
    import csv

    with open(RUNS / name / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(f)]
    last = len(rows)
    shown = sorted({1, 5, *range(10, last, 10), last})
    lines = ["| epoch | learning rate | train loss | train top-1 (augmented) | test top-1 | epoch time |",
             "|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for e in shown:
        r = rows[e - 1]
        lines.append(f"| {e} | {r['lr']:.4f} | {r['train_loss']:.4f} | {r['train_acc1']:.2f} % | "
                     f"{r['test_acc1']:.2f} % | {r['epoch_time']:.1f} s |")  # fmt: skip
    train_s = sum(r["epoch_time"] for r in rows)
    median = sorted(r["img_per_s"] for r in rows)[last // 2]
    wall = rows[-1]["time"] - (rows[0]["time"] - rows[0]["epoch_time"])
    return "\n".join(lines) + (
        f"\n\n{last} epochs: {train_s:,.0f} s of training ({train_s / 60:.1f} min; median {median:,.0f} img/s), "
        f"{wall:,.0f} s from the first step to the last test evaluation. "
        f"The full record: `docs/runs/{name}/metrics.csv`.\n"
    )


MAX_COLUMNS = 11  # a results table with more columns than this is printed one column per row instead


def _key(key: str) -> str:
    return key.replace("_", "_<wbr>")  # the results' JSON keys: <wbr> lets a long one wrap at its underscores


def _cell(value: object) -> str:
    return "—" if value is None else str(value)


def _results_table(path: Path, level: str) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    m, rows = data["machine"], data["rows"]
    gpu = f", {m['gpu']} (CUDA {m.get('cuda')}, driver {m.get('driver', '?')})" if m.get("gpu") else ""
    keys = list(rows[0])
    if len(keys) > MAX_COLUMNS:  # too wide for the content column: transposed, one column per result
        table = [
            "| " + " | ".join([_key(keys[0]), *(_cell(r.get(keys[0])) for r in rows)]) + " |",
            "|---|" + "|".join("--:" for _ in rows) + "|",
            *("| " + " | ".join([_key(k), *(_cell(r.get(k)) for r in rows)]) + " |" for k in keys[1:]),
        ]
    else:
        table = [
            "| " + " | ".join(map(_key, keys)) + " |",
            "|" + "|".join("---" for _ in keys) + "|",
            *("| " + " | ".join(map(_cell, row.values())) + " |" for row in rows),
        ]
    return [
        f"{level} {path.stem}",
        "",
        f"`benchmarks/{path.stem.split('-')[0]}.py`, {m['date']}: {m['cpu']}, {m['cores']} cores{gpu}; "
        f"torch {m['torch']}, torchvision {m.get('torchvision')}, timm {m.get('timm')}.",
        "",
        *table,
        "",
    ]


# Results whose rows are long per-epoch curves: the pages they belong to render them.
SHOWN_ELSEWHERE = {
    "lab_runs": "the tutorials' pages ([Lab10-4](tutorials/lab10-4-image-folder.md), "
    "[Lab10-5](tutorials/lab10-5-vgg-cifar.md), [Lab10-6](tutorials/lab10-6-resnet-cifar.md))",
}


def benchmark_results(folder: Path | None = None) -> str:
    """Every results file in ``folder`` (benchmarks/results/) as a table with its machine: the CPU files, then
    the GPU run's under a heading that names the GPU, driver, CUDA and torch."""
    folder = folder or Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return "No results are committed yet: run `make bench`.\n"
    elsewhere = [f for f in files if f.stem in SHOWN_ELSEWHERE]
    files = [f for f in files if f not in elsewhere]
    cpu = [f for f in files if "-cuda" not in f.stem]
    gpu = [f for f in files if "-cuda" in f.stem]
    parts = ["### On the CPU", ""]
    parts += [f"`{f.stem}` is shown on {SHOWN_ELSEWHERE[f.stem]}.\n" for f in elsewhere]
    for path in cpu:
        parts += _results_table(path, "####")
    if gpu:
        m = json.loads(gpu[0].read_text(encoding="utf-8"))["machine"]
        parts += [
            f"### On a GPU: {m.get('gpu')}, driver {m.get('driver', '?')}, CUDA {m.get('cuda')}, torch {m['torch']}",
            "",
        ]
        for path in gpu:
            parts += _results_table(path, "####")
    return "\n".join(parts)


def _results(name: str) -> dict:
    return json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results" / name).read_text("utf-8"))


def _measured_on(m: dict) -> str:
    """Where a results file was measured, for the note under a table rendered from it."""
    return f"{m['date']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']}"


def mnist_recipes() -> str:
    """The course's MNIST recipe against zoo's fast one, from ``benchmarks/results/train_mnist.json``
    (``python benchmarks/train_mnist.py --runs 3 --seed-recipe``)."""
    data = _results("train_mnist.json")
    rows = [row for row in data["rows"] if row.get("test_top1_per_epoch") is not None]
    lines = [
        f"| recipe | test top-1 after each epoch | last epoch | time to {rows[0]['target_pct']:g} % | wall |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        reached = (
            f"{row['median_time_to_target_s']:.1f} s (epoch {row['epoch_at_target']})"
            if row["median_time_to_target_s"] is not None
            else "not reached"
        )
        lines.append(
            f"| `{row['recipe']}` ({row['epochs']} epochs) | {row['test_top1_per_epoch']} | "
            f"{row['median_final_pct']:.2f} % | {reached} | {row['median_wall_s']:.1f} s |"
        )
    runs = rows[0]["runs"]
    median = f"medians of {runs} runs; the curve is the median run's" if runs > 1 else "one run"
    return "\n".join([*lines, "", f"*{_measured_on(data['machine'])}; {median}.*", ""])


def load_pretrained() -> str:
    """zoo's cold start against the lower bound, from ``benchmarks/results/load_pretrained.json``."""
    data = _results("load_pretrained.json")
    rows = data["rows"]
    lines = [
        "| model | lower bound | zoo | zoo / lower bound | import + load: zoo / lower bound |",
        "| --- | --: | --: | --: | --: |",
    ]
    for r in rows:
        both = r["zoo_import_load_s"] / r["lower_bound_import_load_s"]
        lines.append(
            f"| {r['model']} | {r['lower_bound_load_s'] * 1000:.1f} ms | {r['zoo_load_s'] * 1000:.1f} ms | "
            f"{r['zoo_over_lower_bound']:.2f}x | {both:.2f}x |"
        )
    note = f"*{_measured_on(data['machine'])}; medians of {rows[0]['repeats']} fresh processes.*"
    return "\n".join([*lines, "", note, ""])


def result(spec: str) -> str:
    """One figure of a benchmark's results, for prose: ``FILE FIELD [KEY=VALUE ...] [fmt=SPEC] [scale=N]``.

    ``<!-- zoo:result models-cuda train_img_s model=resnet50 batch=256 dtype=fp32 compiled=false -->`` is the
    ``train_img_s`` of the one row of ``benchmarks/results/models-cuda.json`` that has those values. Without
    ``fmt`` a number of 1,000 or more is printed with thousands separators and no decimals, a smaller one as
    the results file stores it; ``scale`` multiplies first (seconds into milliseconds: ``scale=1000``).
    """
    import shlex

    words = shlex.split(spec)
    if len(words) < 2 or any("=" in w for w in words[:2]):
        raise ValueError(f"zoo:result {spec!r}: expected FILE FIELD [KEY=VALUE ...] [fmt=SPEC] [scale=N]")
    name, field, *pairs = words
    where = dict(pair.split("=", 1) for pair in pairs)
    fmt, scale = where.pop("fmt", None), float(where.pop("scale", 1))
    rows = [
        r
        for r in _results(f"{name}.json")["rows"]
        if all(k in r and (r[k] if isinstance(r[k], str) else json.dumps(r[k])) == v for k, v in where.items())
    ]
    if len(rows) != 1:
        raise ValueError(f"zoo:result {spec!r}: {len(rows)} rows of {name}.json match {where}, expected exactly 1")
    if rows[0].get(field) is None:
        raise ValueError(f"zoo:result {spec!r}: the row has no {field!r}; it has {', '.join(rows[0])}")
    value = rows[0][field]
    if isinstance(value, str):
        return value
    if fmt is not None:
        return format(value * scale, fmt)
    value = value * scale if scale != 1 else value
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def _lab_rows(*labs: str) -> tuple[list[dict], dict]:
    data = _results("lab_runs.json")
    rows = [r for r in data["rows"] if r["lab"] in labs]
    return rows, (rows[0] if rows else {}).get("machine", data["machine"])  # a row merged in keeps its machine


def seed_runs(*labs: str) -> str:
    """The course's recipes' runs of ``labs`` (``python benchmarks/lab_runs.py``): top-1 after every epoch, and time."""
    rows, machine = _lab_rows(*labs)
    lines = ["| model | recipe | training images | train top-1 per epoch (augmented) | test top-1 per epoch "
             "| training time |", "| --- | --- | --: | --- | --- | --: |"]  # fmt: skip
    for r in rows:
        words = r["command"].split()
        model = " ".join(words[2 : words.index("--dataset")])
        recipe = words[words.index("--recipe") + 1]
        lines.append(f"| `{model}` | `{recipe}` | {r['train_images']:,} | {r['train_top1_per_epoch']} | "
                     f"{r['top1_per_epoch']} | {r['train_s']:.0f} s ({r['median_img_s']:.0f} img/s) |")  # fmt: skip
    note = f"*{_measured_on(machine)}; float32; the commands are in `benchmarks/results/lab_runs.json`.*"
    return "\n".join([*lines, "", note, ""])


def folder_runs() -> str:
    """Lab10-4's runs on the photos (``python benchmarks/lab_runs.py --only lab10-4``): top-1 on val/ after each
    epoch, and the kept (last) epoch's with the photos it rests on and its 95 % interval, as zoo prints it."""
    from zoo.utils.scores import wilson_interval

    rows, machine = _lab_rows("lab10-4")
    lines = ["| | top-1 on val/ after each epoch | kept: the last epoch | right / photos, 95 % interval | "
             "training time |", "| --- | --- | --: | --: | --: |"]  # fmt: skip
    for r in rows:
        what = "fine-tuned from `resnet20.cifar10`" if "--pretrained" in r["command"] else "from scratch"
        n = r["measured_images"]
        hits = round(r["kept_top1"] * n / 100)
        lo, hi = wilson_interval(hits, n)
        lines.append(f"| {what} | {r['top1_per_epoch']} | {r['kept_top1']:.2f} % (epoch {r['kept_epoch']}) | "
                     f"{hits}/{n}, {lo:.0f}\u2013{hi:.0f} % | {r['train_s']:.0f} s |")  # fmt: skip
    note = f"*{_measured_on(machine)}; the commands are in `benchmarks/results/lab_runs.json`.*"
    return "\n".join([*lines, "", note, ""])


PLACEHOLDERS: dict[str, Callable[[], str]] = {
    "<!-- zoo:mnist-recipes -->": mnist_recipes,
    "<!-- zoo:load-pretrained -->": load_pretrained,
    "<!-- zoo:benchmark-charts -->": bench_charts.benchmark_charts,
    "<!-- zoo:benchmark-results -->": benchmark_results,
    "<!-- zoo:vgg-table -->": vgg_table,
    "<!-- zoo:resnet-table -->": resnet_table,
    "<!-- zoo:cifar-resnet-table -->": cifar_resnet_table,
    "<!-- zoo:cifar10-results -->": cifar10_results,
    "<!-- zoo:seed-runs -->": lambda: seed_runs("lab10-5", "lab10-6"),
    "<!-- zoo:seed-runs lab10-5 -->": lambda: seed_runs("lab10-5"),
    "<!-- zoo:seed-runs lab10-6 -->": lambda: seed_runs("lab10-6"),
    "<!-- zoo:folder-runs -->": folder_runs,
}
# Each run recorded under docs/runs/ has its placeholder, <!-- zoo:run NAME -->.
PLACEHOLDERS.update({f"<!-- zoo:run {p.name} -->": (lambda n=p.name: run_curve(n)) for p in sorted(RUNS.glob("*"))})
