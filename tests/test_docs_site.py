"""The documentation site: built strictly, served on 127.0.0.1 and read in headless Chromium.

Skips cleanly where MkDocs (the ``docs`` extra) or Chromium (Debian's ``chromium``) is not installed;
``.ci/run`` installs both. ``ZOO_SCREENSHOTS=1`` also rewrites the site's screenshots in
``docs/assets/screenshots/`` (1400 px wide, as the table-width check sees the pages).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
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
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

import zoo

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MKDOCS.exists(), reason="MkDocs is not installed (pip install -e '.[docs]')"),
]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

WIDTH, HEIGHT = 1400, 1000  # a laptop's browser window: both sidebars show from 1220 px
SCREENSHOTS = ROOT / "docs" / "assets" / "screenshots"
# The pages the screenshots show, and the file each is written to.
SCREENSHOT_PAGES = {"": "home.png", "getting-started/": "getting-started.png",
                    "models/resnet20/": "model-resnet20.png", "weights_table/": "weights-table.png"}  # fmt: skip


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


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe: no WebDriver, no extra package.

    ``--remote-debugging-pipe`` reads commands on fd 3 and writes replies on fd 4, each a JSON message ended
    by a NUL byte; bash puts the two pipes there (Popen alone cannot choose a child's descriptor numbers).
    """

    def __init__(self, profile: Path, width: int, height: int, timeout: float = 60) -> None:
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        # Above 9, so that moving them to 3 and 4 cannot overwrite one with the other.
        a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser))
        os.close(to_browser)
        os.close(from_browser)
        args = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{a} 4>&{b} {a}<&- {b}>&-', "bash", *args],
                                     pass_fds=(a, b), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(a)
        os.close(b)
        self.timeout = timeout
        self._buffer = b""
        self._id = 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", page=True)
        self.call("Emulation.setDeviceMetricsOverride", page=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if not select.select([self._in], [], [], self.timeout)[0]:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout} s")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe (exit status {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, page: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command (to the page when ``page``) and return its result."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if page:
            message["sessionId"] = self._session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def goto(self, url: str) -> None:
        """Open ``url`` and wait for its load event."""
        self._events.clear()
        self.call("Page.navigate", page=True, url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._events.append(self._read())

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call("Runtime.evaluate", page=True, expression=expression, awaitPromise=True,
                           returnByValue=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """The window as PNG."""
        return base64.b64decode(self.call("Page.captureScreenshot", page=True, format="png")["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=20)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._in)
            os.close(self._out)


# Every table in the page's content column: its laid-out width (the width of what it holds where it scrolls)
# against the width the column gives its content. Fonts and Material's table wrappers are in place by then.
MEASURE_TABLES = """(async () => {
  await document.fonts.ready;
  await new Promise(requestAnimationFrame);
  const column = document.querySelector("article.md-content__inner");
  const style = getComputedStyle(column);
  const width = column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return {column: width, tables: [...column.querySelectorAll("table")].map(t => ({
    width: Math.max(t.getBoundingClientRect().width, t.scrollWidth),
    head: (t.rows[0] ? t.rows[0].innerText : "").replace(/\\s+/g, " ").trim().slice(0, 60)}))};
})()"""


def _small_png(png: bytes) -> bytes:
    """The screenshot with a 256-colour palette: a third of the size, and text stays sharp."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    chromium = Browser(tmp_path_factory.mktemp("chromium"), WIDTH, HEIGHT)
    yield chromium
    chromium.close()


@needs_chromium
def test_no_table_is_wider_than_its_content_column_at_1400_px(site, server, browser):
    """Every table on every page fits the content column of a 1400 px window, the sidebars showing.

    A table too wide scrolls sideways inside its box, and its right-hand columns go unseen. With
    ``ZOO_SCREENSHOTS=1`` the same browser also writes the site's screenshots.
    """
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "<table" in p.read_text("utf-8"))
    too_wide, measured = [], 0
    for page in pages:
        browser.goto(urljoin(server, page))
        found = browser.evaluate(MEASURE_TABLES)
        for table in found["tables"]:
            measured += 1
            if table["width"] > found["column"] + 1:  # one pixel for sub-pixel rounding
                too_wide.append(f"{page}: {table['width']:.0f} px > {found['column']:.0f} px ({table['head']})")
    assert not too_wide, "tables wider than the content column at 1400 px:\n" + "\n".join(too_wide)
    assert measured > 50, f"only {measured} tables measured: did the pages load?"

    if os.environ.get("ZOO_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for page, filename in SCREENSHOT_PAGES.items():
            browser.goto(urljoin(server, page))
            browser.evaluate("document.fonts.ready")
            (SCREENSHOTS / filename).write_bytes(_small_png(browser.screenshot()))


def _zoo_links(html: str) -> list[tuple[str, str]]:
    """(href, name) of every name the docs hook linked: ``<a class="zoo-name" href=...>``."""
    found = re.findall(r'<a class="zoo-name" href="([^"]*)">(?:<code>)?([^<]+)', html)
    return [(href, name.strip()) for href, name in found]


def test_every_model_has_a_page_and_every_name_in_a_table_links_to_it(site):
    """A page per architecture; in the tables, model and weights names link to it (weights to their section)."""
    from zoo.pretrained import manifest

    archs = zoo.list_models()
    for arch in archs:
        page = (site / "models" / arch / "index.html").read_text(encoding="utf-8")
        assert re.search(rf"<h1[^>]*>{arch}\b", page) and "create_model" in page, arch
    weights = _zoo_links((site / "weights_table" / "index.html").read_text(encoding="utf-8"))
    assert sorted(name for _, name in weights) == sorted(manifest.weight_names())
    models = _zoo_links((site / "models_table" / "index.html").read_text(encoding="utf-8"))
    assert sorted(name for _, name in models) == sorted(archs)
    # Every such link, on every page, reaches its page and, for weights, the section of that name.
    checked = 0
    for html_file in site.rglob("*.html"):
        for href, name in _zoo_links(html_file.read_text(encoding="utf-8")):
            url, fragment = urldefrag(href)
            target = (html_file.parent / url / "index.html") if url else html_file
            assert target.resolve().parent.name == name.split(".")[0], f"{html_file}: {name} -> {href}"
            if "." in name:
                assert f'id="{fragment}"' in target.read_text(encoding="utf-8"), f"{html_file}: {name} -> {href}"
            checked += 1
    assert checked > 2 * len(manifest.weight_names())
    # The architecture pages are in the nav, under Models.
    home = (site / "index.html").read_text(encoding="utf-8")
    assert all(f'href="models/{arch}/"' in home for arch in archs)
