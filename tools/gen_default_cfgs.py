"""Write each model family's ``_WEIGHTS_CFGS`` table from weights/manifest.json.

A model built without weights reports the preprocessing of its architecture's default weights (timm's rule), and
that preprocessing lives with the family, so that building a model reads no file. The table holds, per stem and
architecture, the fields of the default entry (input size, interpolation, crop, mean and std) that differ from the
stem's template; weights trained with another stem, and a fixed-size model's weights of another size, give none.

    python tools/gen_default_cfgs.py           # print the tables
    python tools/gen_default_cfgs.py --write   # rewrite them in zoo/models/*.py
    python tools/gen_default_cfgs.py --check   # exit 1 if a table differs from the manifest
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402, F401  (registers every architecture)
from zoo import registry  # noqa: E402
from zoo.models.cfg import PREPROCESSING  # noqa: E402
from zoo.pretrained import manifest  # noqa: E402

TABLE = "_WEIGHTS_CFGS"
Table = dict[str, dict[str, dict[str, Any]]]  # stem -> arch -> fields


def default_weights_fields(arch: str) -> tuple[str, dict[str, Any]] | None:
    """(stem, preprocessing fields) of ``arch``'s default weights, or None when it has none."""
    tag = manifest.default_tag(arch)
    if not tag:
        return None
    entry = manifest.get_entry(arch, tag)
    info = entry.preprocessing()
    with torch.device("meta"):  # shapes only: the builder's class and its default stem
        stem_param = inspect.signature(type(registry.model_entrypoint(arch)()).__init__).parameters.get("stem")
    stem = (entry.model_args or {}).get("stem", stem_param.default if stem_param else None)
    return stem, {k: tuple(v) if isinstance(v, list) else v for k, v in info.items() if k in PREPROCESSING and v}


def weights_cfgs(module: Any) -> Table:
    """The table of one family module: what its default weights change in each stem's template."""
    table: Table = {}
    for arch in module.default_cfgs:
        found = default_weights_fields(arch) if registry.is_model(arch) else None
        if found is None:
            continue
        stem, fields = found
        stems = module._STEM_CFGS
        template = stems[stem] if stem is not None else next(iter(stems.values()))
        size = fields.get("input_size")
        if template.fixed_input_size and size and size[1:] != template.input_size[1:]:
            continue  # the model takes no other size
        changed = {k: v for k, v in fields.items() if v != getattr(template, k)}
        if changed:
            table.setdefault(stem or next(iter(stems)), {})[arch] = changed
    return table


def _modules() -> list[Any]:
    names = dict.fromkeys(registry.get_arch_module(a) for a in registry.list_archs())
    return [importlib.import_module(n) for n in names]


def _assignment(path: Path) -> ast.AnnAssign:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == TABLE:
            return node
    raise SystemExit(f"{path} has no `{TABLE}: ... = {{...}}` table")


def render(table: Table) -> str:
    lines = [f"{TABLE}: dict[str, dict[str, dict[str, Any]]] = {{"]
    for stem, archs in table.items():
        lines += [f'    "{stem}": {{', *(f'        "{a}": {fields!r},' for a, fields in archs.items()), "    },"]
    return "\n".join([*lines, "}"]).replace("{\n}", "{}").replace("'", '"') + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in zoo/models/*.py")
    mode.add_argument("--check", action="store_true", help="exit 1 if a table differs from the manifest")
    args = parser.parse_args()
    stale = []
    for module in _modules():
        path, table = Path(module.__file__), weights_cfgs(module)
        node = _assignment(path)
        if args.check and ast.literal_eval(node.value) != table:
            stale.append(path)
        elif args.write:
            lines = path.read_text().splitlines(keepends=True)
            lines[node.lineno - 1 : node.end_lineno] = [render(table)]
            path.write_text("".join(lines))
            subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(path)], check=False)
        elif not args.check:
            print(f"# {path.relative_to(ROOT)}\n{render(table)}")
    for path in stale:
        print(f"{path} is out of date: run python tools/gen_default_cfgs.py --write", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
