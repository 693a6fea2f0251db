"""MkDocs hook: the generated pages are rendered from the registry and the manifest at build time.

``models_table.md`` and ``weights_table.md`` are also committed (readable on GitHub), but the site never
shows the committed text: each build renders them again with ``docs/gen_tables.py``, so every number on the
site traces to the code or ``weights/manifest.json``. The papers' architecture tables in ``models.md`` are
placeholders filled from zoo's config tables (``docs/paper_tables.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent))

import gen_tables  # noqa: E402
import paper_tables  # noqa: E402


def on_config(config: Any, **kwargs: Any) -> Any:
    """The version in the header: the site is of zoo at this version (pyproject.toml's)."""
    import tomllib

    version = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    config["site_name"] = f"zoo {version}"
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replace a generated page's committed text with a fresh rendering."""
    render = gen_tables.TABLES.get(page.file.src_uri)
    if render is not None:
        return render()
    for placeholder, table in paper_tables.PLACEHOLDERS.items():
        if placeholder in markdown:
            markdown = markdown.replace(placeholder, table())
    return markdown
