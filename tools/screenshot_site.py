"""Screenshot a page of the built documentation site in headless Chromium (served on 127.0.0.1 only).

make site && python tools/screenshot_site.py models_table/ docs/assets/model-zoo.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars"]  # fmt: skip


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", help="path of the page in the site, e.g. models_table/")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--site", type=Path, default=ROOT / "site", help="the built site (default site/)")
    parser.add_argument("--size", default="1600,1400", help="window width,height (default 1600,1400)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed (apt-get install chromium)")
    if not (args.site / "index.html").is_file():
        raise SystemExit(f"{args.site} holds no built site: run `make site` first")
    handler = partial(QuietHandler, directory=str(args.site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as profile:
            url = f"http://127.0.0.1:{httpd.server_address[1]}/{args.page}"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shot = [f"--user-data-dir={profile}", f"--window-size={args.size}", f"--screenshot={args.out.resolve()}"]
            subprocess.run([chromium, *FLAGS, *shot, url], check=True, capture_output=True, timeout=120)
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
