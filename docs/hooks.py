"""MkDocs hook: the generated pages are rendered from the registry and the manifest at build time.

``models_table.md``, ``weights_table.md`` and the architecture pages ``models/<arch>.md`` are also committed
(readable on GitHub), but the site never shows the committed text: each build renders them again with
``docs/gen_tables.py``, so every number on the site traces to the code or ``weights/manifest.json``. A committed
page that differs from its rendering, or that no architecture renders any more, is a warning (an error in the
strict build): ``python docs/gen_tables.py`` rewrites them. The
architecture pages join the nav here, one section per family, so a new architecture needs no nav edit. The
papers' architecture tables in ``models.md`` are placeholders filled from zoo's config tables
(``docs/paper_tables.py``). In every table on the site, a model or weights name links to its page.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent))

import gen_tables  # noqa: E402
import paper_tables  # noqa: E402

NAV_SECTION = "Models"  # the nav section the architecture pages are added to
log = logging.getLogger("mkdocs.hooks.zoo")  # under "mkdocs": the strict build counts its warnings
_CELL = re.compile(r"(<(td|th)(?:\s[^>]*)?>)(.*?)(</\2>)", re.S)
_CODE = re.compile(r"<code>([A-Za-z0-9_]+(?:\.[A-Za-z0-9_\-]+)?)</code>")


def on_config(config: Any, **kwargs: Any) -> Any:
    """The version in the header (pyproject.toml's), and the architecture pages in the nav."""
    import tomllib

    version = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    config["site_name"] = f"zoo {version}"
    gen_tables.clear_caches()  # `mkdocs serve` rebuilds in this process: count the models again
    nav = config["nav"]
    if nav is not None:
        section = next((item[NAV_SECTION] for item in nav if isinstance(item, dict) and NAV_SECTION in item), None)
        if not isinstance(section, list):
            section = []
            nav.append({NAV_SECTION: section})
        if not any(f"{gen_tables.MODEL_PAGES}/" in str(item) for item in section):  # once per config
            section.extend(gen_tables.model_nav())
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replace a generated page's committed text with a fresh rendering."""
    render = gen_tables.TABLES.get(page.file.src_uri)
    if render is not None:
        text = render()
        if text != markdown:
            log.warning(f"docs/{page.file.src_uri} is not current: run python docs/gen_tables.py")
        return text
    if gen_tables.orphaned(page.file.src_uri, markdown):
        log.warning(f"docs/{page.file.src_uri} is generated for no registered architecture: run docs/gen_tables.py")
    for placeholder, table in {**paper_tables.PLACEHOLDERS, **gen_tables.PLACEHOLDERS}.items():
        if placeholder in markdown:
            markdown = markdown.replace(placeholder, table())
    markdown = _outside_code(RESULT, lambda m: paper_tables.result(m[1]), markdown)
    return _outside_code(METRIC, lambda m: metric(m[1], m[2]), markdown)


# Code blocks and inline code show a placeholder as it is written (the architecture page explains them).
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.S | re.M)


def _outside_code(pattern: re.Pattern[str], render: Any, markdown: str) -> str:
    parts, end = [], 0
    for code in CODE.finditer(markdown):
        parts += [pattern.sub(render, markdown[end : code.start()]), code[0]]
        end = code.end()
    return "".join([*parts, pattern.sub(render, markdown[end:])])


# A figure of a benchmark in prose, from benchmarks/results/: <!-- zoo:result FILE FIELD KEY=VALUE ... -->
RESULT = re.compile(r"<!-- zoo:result (.+?) -->")
# A figure of a set of weights in prose, from the manifest: <!-- zoo:metric resnet20.cifar10 top1 --> -> 92.20
METRIC = re.compile(r"<!-- zoo:metric ([A-Za-z0-9_]+\.[A-Za-z0-9_\-]+) (top1|top5) -->")


def metric(name: str, key: str) -> str:
    """The manifest's ``key`` of the weights ``name``, as the tables print it (two decimals)."""
    from zoo.pretrained import manifest

    arch, tag = name.split(".", 1)
    value = (manifest.get_entry(arch, tag).metrics or {}).get(key)
    if value is None:
        raise ValueError(f"{name} has no {key} in the manifest")
    return f"{value:.2f}"


def _names() -> tuple[set[str], set[str]]:
    from zoo.factory import list_models
    from zoo.pretrained import manifest

    return set(list_models()), set(manifest.weight_names())


def on_page_content(html: str, page: Any, files: Any, **kwargs: Any) -> str:
    """Link every model name (`resnet50`) and weights name (`resnet50.tv_in1k`) in a table cell to its page.

    Done on the HTML, for every table on the site, so that the committed tables stay plain Markdown whose
    cells tests can read. A weights name links to its section of the architecture's page.
    """
    from markdown.extensions.toc import slugify

    archs, weights = _names()

    def href(name: str) -> str | None:
        arch = name.split(".")[0]
        if arch not in archs or (name != arch and name not in weights):
            return None
        target = files.get_file_from_path(f"{gen_tables.MODEL_PAGES}/{arch}.md")
        if target is None:
            return None
        anchor = f"#{slugify(name, '-')}" if name != arch else ""
        if target is page.file:
            return anchor or None  # the page itself: only a weights name has somewhere to go
        return target.url_relative_to(page.file) + anchor

    def link_code(match: re.Match[str]) -> str:
        url = href(match[1])
        return f'<a class="zoo-name" href="{url}">{match[0]}</a>' if url else match[0]

    def link_cell(match: re.Match[str]) -> str:
        start, text, end = match[1], match[3], match[4]
        if "<a " in text:  # a cell that already links somewhere keeps its links
            return match[0]
        url = href(text.strip())  # a cell that is a bare name, as the benchmark results print them
        if url:
            return f'{start}<a class="zoo-name" href="{url}">{text}</a>{end}'
        return start + _CODE.sub(link_code, text) + end

    return _CELL.sub(link_cell, html)
