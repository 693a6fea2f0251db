"""What a model build costs in zoo's own code: a warm ``create_model("resnet32.cifar10", pretrained=True)`` and a
bare ``create_model("resnet50")``, each in a fresh process.

    python benchmarks/profile_load.py

For the warm load (the file cached and verified by a first load in the same process, the manifest's parse cache
cleared as a new process would have it): how often the manifest is read and its entry parsed, and how many calls
zoo's own functions make. For the bare build: which ``zoo.pretrained`` modules it imports and which files it
opens (none of the weights package, no file: the family's table holds the default cfg).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WARM = """
import cProfile, json, pstats
import zoo
from zoo.pretrained import manifest

zoo.create_model("resnet32.cifar10", pretrained=True)  # the first load verifies the file and marks it
manifest._load.cache_clear()
profile = cProfile.Profile()
profile.enable()
zoo.create_model("resnet32.cifar10", pretrained=True)
profile.disable()
stats = pstats.Stats(profile).stats
calls = {f"{Path(f[0]).stem}.{f[2]}": s[1] for f, s in stats.items() if "/zoo/" in f[0] and "/models/" not in f[0]}
print(json.dumps({"calls": calls}))
""".replace("import cProfile", "from pathlib import Path\nimport cProfile")

BARE = """
import json, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
import zoo
before = len(opened)
zoo.create_model("resnet50")
modules = sorted(m for m in sys.modules if m.startswith("zoo.pretrained"))
print(json.dumps({"modules": modules, "opened": [p for p in opened[before:] if not p.endswith((".pyc", ".py"))]}))
"""


def run(code: str) -> dict:
    """``code`` in a fresh Python process at the repository root; its last line of output, as JSON."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    warm = run(WARM)["calls"]
    wanted = ("manifest._read", "manifest.get_entry", "manifest.from_dict", "manifest.default_tag", "fetch.fetch_file")
    print('warm create_model("resnet32.cifar10", pretrained=True):')
    for name in wanted:
        print(f"  {name:<24} {warm.get(name, 0)} call(s)")
    print(f"  calls in zoo's functions outside the model families: {sum(warm.values())} in {len(warm)} functions")
    for name, count in sorted(warm.items(), key=lambda item: -item[1])[:3]:  # per tensor or per op, not per load
        print(f"    {count:>5}  {name}")
    bare = run(BARE)
    print('bare create_model("resnet50"):')
    print(f"  zoo.pretrained modules imported: {', '.join(bare['modules']) or 'none'}")
    print(f"  files opened: {', '.join(bare['opened']) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
