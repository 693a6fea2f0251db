"""The documentation site: built strictly, served on 127.0.0.1 and read in headless Chromium.

Skips cleanly where MkDocs (the ``docs`` extra) or Chromium (Debian's ``chromium``) is not installed;
``.ci/run`` installs both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

import zoo

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip

pytestmark = pytest.mark.skipif(not MKDOCS.exists(), reason="MkDocs is not installed (pip install -e '.[docs]')")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.code: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attrs_d = dict(attrs)
        if tag == "a" and attrs_d.get("href"):
            self.links.append(attrs_d["href"])  # type: ignore[arg-type]
        elif tag in ("link", "script", "img") and (attrs_d.get("href") or attrs_d.get("src")):
            self.links.append(attrs_d.get("href") or attrs_d.get("src"))  # type: ignore[arg-type]
        self._in_code = tag == "code"

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code.append(data.strip())


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    res = subprocess.run([str(MKDOCS), "build", "--strict", "-d", str(out)], cwd=ROOT, capture_output=True,
                         text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def server(site):
    handler = partial(QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: the kernel picks a free one, no race
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _dump_dom(url: str, profile: Path) -> str:
    res = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_every_internal_link_resolves(site, server):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 10
    checked: set[str] = set()
    broken = []
    for page in pages:
        base = urljoin(server, page.relative_to(site).as_posix())
        for href in _parse(page.read_text(encoding="utf-8")).links:
            url = urldefrag(urljoin(base, href))[0]
            if urlsplit(url).netloc != urlsplit(server).netloc or url in checked:
                continue  # links to other sites are not followed: no traffic leaves 127.0.0.1
            checked.add(url)
            try:
                urllib.request.urlopen(url, timeout=10).close()
            except urllib.error.HTTPError as e:
                broken.append(f"{page.relative_to(site)}: {href} -> HTTP {e.code}")
    assert not broken, "\n".join(broken)
    assert len(checked) > 20


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_model_zoo_page_lists_every_architecture_in_a_browser(server, tmp_path):
    dom = _dump_dom(urljoin(server, "models_table/"), tmp_path / "profile")
    listed = set(_parse(dom).code)
    missing = [arch for arch in zoo.list_models() if arch not in listed]
    assert not missing, f"the rendered model zoo page does not list {missing}"
    # The API reference rendered too, with create_model's docstring.
    api = _dump_dom(urljoin(server, "api/zoo/"), tmp_path / "profile")
    assert "create_model" in api and "Build a registered model" in api


def test_the_papers_tables_are_rendered_from_the_config_tables(site):
    from zoo.models.resnet import RESNET_DEPTHS
    from zoo.models.vgg import VGG_CONFIGS

    html = (site / "models" / "index.html").read_text(encoding="utf-8")
    assert "<!-- zoo:" not in html  # every placeholder was filled
    for name, cfg in VGG_CONFIGS.items():
        assert f'<th style="text-align: center;">{name}</th>' in html
        convs = sum(1 for s in cfg if s not in ("M", "LRN"))
        assert f"<strong>{convs + 3} weight layers</strong>" in html
    for depth, (_, layers) in RESNET_DEPTHS.items():
        assert f"{depth}-layer" in html and f"× {layers[2]}</td>" in html
