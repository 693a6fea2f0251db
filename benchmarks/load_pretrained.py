"""Cold-start cost of a pretrained model: zoo against a lower bound, torchvision and timm.

Each measurement is a fresh Python process that imports torch (not timed), then imports the library
("import") and builds the model with its weights ("load"); the table shows medians over the processes.

  lower bound   build on the meta device with init skipped + safetensors mmap + load_state_dict(assign=True);
                its "import" is zoo's model code, its "load" includes importing safetensors (as zoo's does)
  zoo           zoo.create_model(arch, pretrained=True), from a warm Hugging Face cache
  torchvision   torchvision.models.get_model(arch, weights="DEFAULT"), from a warm torch.hub cache
  timm          timm.create_model(arch.tag, pretrained=True, pretrained_cfg_overlay={"file": ...})

Nothing can be downloaded here, so the script makes the weights first: torchvision's randomly
initialised model, saved as the .pth file torchvision expects in TORCH_HOME/hub/checkpoints (its
name is the URL's; torch.hub checks the hash only when it downloads, not when the file is cached),
the same tensors in zoo's layout as the lower bound's safetensors file, and in timm's layout (VGG's
classifier as timm's ``pre_logits`` convs) as the file of a loopback Hub repo that stands for timm's
``timm/<arch>.<tag>``, listed as the real manifest lists it (a third-party source, verified against the
Hub's SHA-256 and pinned) and fetched once into the Hugging Face cache. zoo maps timm's VGG layout at
every load, as views of the memory-mapped file, so every zoo load is the "first load after download"
and there is no second, converted copy. The server is stopped before
measuring and the processes run with HF_HUB_OFFLINE=1: a warm cache must need no network. Every
process also reports a checksum of the classifier, which must agree across the four methods.

    python benchmarks/load_pretrained.py            # resnet50, resnet152, vgg16, vgg19_bn; 5 processes each
    python benchmarks/load_pretrained.py --quick    # resnet50, 1 process each and no warm-up: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_info, print_machine, write_results  # noqa: E402

ARCHS = ("resnet50", "resnet152", "vgg16", "vgg19_bn")
METHODS = ("lower bound", "zoo", "torchvision", "timm")

PROLOGUE = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
arch, tag, path = sys.argv[1:4]
"""
EPILOGUE = """
t3 = time.perf_counter()
head = [v for k, v in model.state_dict().items() if k.endswith("weight")][-1]
bad = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
assert not bad, bad
print(json.dumps({"import": t2 - t1, "load": t3 - t2, "check": float(head.double().sum()),
                  "torchvision": "torchvision" in sys.modules, "timm": "timm" in sys.modules}))
"""
CODE = {
    "lower bound": """
import zoo.registry, zoo.models
t2 = time.perf_counter()
from safetensors.torch import load_file  # the loader is part of loading (zoo imports it lazily too)
from torch.overrides import TorchFunctionMode

class SkipInit(TorchFunctionMode):  # meta tensors have nothing to initialise
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = args[0] if args else kwargs.get("tensor")
        if getattr(func, "__name__", "").endswith("_") and isinstance(t, torch.Tensor) and t.is_meta \\
                and not func.__name__.startswith("__"):
            return t
        return func(*args, **kwargs)

with torch.device("meta"), SkipInit():
    model = zoo.registry.model_entrypoint(arch)()
model.load_state_dict(load_file(path), assign=True)
""",
    "zoo": """
import zoo
t2 = time.perf_counter()
model = zoo.create_model(arch, pretrained=True)
""",
    "torchvision": """
import torchvision
t2 = time.perf_counter()
model = torchvision.models.get_model(arch, weights="DEFAULT")
""",
    "timm": """
import timm
t2 = time.perf_counter()
model = timm.create_model(f"{arch}.{tag}", pretrained=True, pretrained_cfg_overlay={"file": path})
""",
}


def to_timm_layout(state: dict) -> dict:
    """torchvision's VGG classifier -> timm's pre_logits convs and head (ResNet keys are the same)."""
    renames = (
        ("classifier.0.", "pre_logits.fc1.", (4096, -1, 7, 7)),
        ("classifier.3.", "pre_logits.fc2.", (4096, -1, 1, 1)),
        ("classifier.6.", "head.fc.", None),
    )
    out = {}
    for key, value in state.items():
        for old, new, shape in renames:
            if key.startswith(old):
                key = new + key[len(old) :]
                if shape and key.endswith("weight"):
                    value = value.reshape(shape)
        out[key] = value
    return out


def prepare(work: Path, archs: list[str]) -> tuple[dict[str, str], dict[str, tuple[str, str, str]]]:
    """Make the weights, warm the caches; returns the environment and arch -> (tag, zoo-layout file, timm file)."""
    import torch
    import torchvision
    from weights_server import WeightsServer

    from zoo.pretrained import manifest
    from zoo.pretrained.convert import TORCHVISION_TAGS

    env = {
        **os.environ,
        "TORCH_HOME": str(work / "torch"), "ZOO_CACHE_DIR": str(work / "zoo"), "HF_HOME": str(work / "hf"),
        "ZOO_WEIGHTS_DIR": str(work / "weights"), "ZOO_HUB_ORG": "bench", "HF_HUB_DISABLE_TELEMETRY": "1",
        "ZOO_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    os.environ.update(env)
    (work / "weights").mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "weights").iterdir():  # the manifest and every file it names
        if f.suffix in (".json", ".safetensors"):
            shutil.copyfile(f, work / "weights" / f.name)
    checkpoints = work / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[str, str, str]] = {}
    with WeightsServer() as server:
        os.environ["HF_ENDPOINT"] = server.endpoint
        for arch in archs:
            weights = torchvision.models.get_model_weights(arch).DEFAULT
            tag = TORCHVISION_TAGS[weights.name]
            torch.manual_seed(0)
            state = torchvision.models.get_model(arch).state_dict()
            torch.save(state, checkpoints / weights.url.rsplit("/", 1)[-1])
            local = work / f"{arch}.{tag}.safetensors"
            from safetensors.torch import save

            from zoo.pretrained.files import save_weights

            save_weights(state, local)  # the lower bound's file, in zoo's layout
            repo = f"bench-timm/{arch}.{tag}"
            server.add_hub(repo, "model.safetensors", save(to_timm_layout(state)))
            source = {"type": "hub", "repo_id": repo, "filename": "model.safetensors", "revision": "main"}
            manifest.update_entry(f"{arch}.{tag}", {"source": source}, merge=True)
            from zoo.pretrained.fetch import fetch

            cached = fetch(f"{arch}.{tag}")  # verified against the Hub's SHA-256, pinned, in the Hub cache
            files[arch] = (tag, str(local), str(cached))
            print(f"prepared {arch}.{tag}: {local.stat().st_size / 2**20:.0f} MiB", file=sys.stderr)
        del os.environ["HF_ENDPOINT"]
    env["HF_HUB_OFFLINE"] = "1"
    # Byte-code caching as on a normal install (this machine sets PYTHONDONTWRITEBYTECODE), kept out of the
    # source tree; the warm-up process of each measurement fills it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env, files


def run_once(method: str, arch: str, tag: str, path: str, env: dict[str, str]) -> dict:
    code = PROLOGUE + CODE[method] + EPILOGUE
    out = subprocess.run([sys.executable, "-c", code, arch, tag, path], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{method} {arch} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="resnet50 only, 1 process per measurement, no warm-up")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--json", help="also write the raw timings here")
    parser.add_argument("--workdir", help="keep the generated weights and caches here (default: a temporary folder)")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    if args.quick:
        args.archs = ["resnet50"]
    info = machine_info()
    print_machine(info)
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        env, files = prepare(work, args.archs)
        for arch in args.archs:
            tag, zoo_layout, timm_layout = files[arch]
            results[arch] = {}
            for method in METHODS:
                path = timm_layout if method == "timm" else zoo_layout
                if not args.quick:  # warm-up: .pyc caches, file pages, zoo's one-time check of a new download
                    run_once(method, arch, tag, path, env)
                runs = [run_once(method, arch, tag, path, env) for _ in range(repeats)]
                results[arch][method] = runs
                load = statistics.median(r["load"] for r in runs)
                print(f"{arch:<10} {method:<12} load {load:.3f} s", file=sys.stderr)
                if len({r["check"] for r in runs}) != 1:
                    raise SystemExit(f"{arch} {method}: the processes loaded different weights")
            checks = {m: results[arch][m][0]["check"] for m in METHODS}
            if len(set(checks.values())) != 1:
                raise SystemExit(f"{arch}: the methods loaded different weights: {checks}")
            for method in ("lower bound", "zoo"):
                if any(r["torchvision"] or r["timm"] for r in results[arch][method]):
                    raise SystemExit(f"{arch}: {method} imported torchvision or timm")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print_tables(results, repeats)
    rows = []
    for arch, by_method in results.items():
        row: dict = {"model": arch, "repeats": repeats}
        for method in METHODS:
            key = method.replace(" ", "_")
            runs = by_method[method]
            row[f"{key}_load_s"] = round(statistics.median(r["load"] for r in runs), 4)
            row[f"{key}_import_load_s"] = round(statistics.median(r["import"] + r["load"] for r in runs), 4)
        row["zoo_over_lower_bound"] = round(row["zoo_load_s"] / row["lower_bound_load_s"], 2)
        row["torchvision_over_zoo"] = round(row["torchvision_load_s"] / row["zoo_load_s"], 1)
        row["timm_over_zoo"] = round(row["timm_load_s"] / row["zoo_load_s"], 1)
        rows.append(row)
    print(f"wrote {write_results('load_pretrained' + ('-quick' if args.quick else ''), rows, info, args.out)}")
    return 0


def print_tables(results: dict, repeats: int) -> None:
    def med(arch: str, method: str, key: str) -> float:
        runs = results[arch][method]
        return statistics.median(r[key] if key != "total" else r["import"] + r["load"] for r in runs)

    import platform

    import torch

    print(f"\nmedians of {repeats} fresh processes; torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}\n")  # fmt: skip
    for key, title in (("load", "build + load (s), after the library is imported"),
                       ("total", "import of the library + build + load (s), after `import torch`")):  # fmt: skip
        print(f"{title}\n")
        print("| model | lower bound | zoo | torchvision | timm | zoo / lower bound | torchvision / zoo | timm / zoo |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|")
        for arch in results:
            lb, z, tv, tm = (med(arch, m, key) for m in METHODS)
            ratios = f"{z / lb:.2f}x | {tv / z:.1f}x | {tm / z:.1f}x"
            print(f"| {arch} | {lb:.3f} | {z:.3f} | {tv:.3f} | {tm:.3f} | {ratios} |")
        print()


if __name__ == "__main__":
    sys.exit(main())
