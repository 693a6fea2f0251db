"""A loopback HTTP server for weights tests (and the load benchmark): plain URLs and a Hub look-alike.

It listens on 127.0.0.1 only, on a port the system picks when the server binds (port 0, read back from
the bound socket), so no other process can take the port between choosing and binding it. For a Hub
repo file it answers HEAD and GET of ``/{repo_id}/resolve/{revision}/{filename}`` with the headers the Hub
sends (``X-Repo-Commit``, ``ETag``, and for an LFS file ``X-Linked-Etag``, its SHA-256, and
``X-Linked-Size``), so ``HF_ENDPOINT=server.endpoint`` makes it the Hub. A file added at a branch is
served at that branch and at the commit the branch points to; a 40-hex revision is its own commit.

Each file can misbehave on purpose:
  "ok"     the file, honestly;
  "cut"    announce the full Content-Length, send half, close the connection (a dropped transfer);
  "short"  send the first half with an honest Content-Length (a truncated file on the server).
``delay`` slows every 64 KiB chunk down, to hold a download open while another process starts one.
``hold(path_part)`` stops a matching GET after its first chunk until ``release()``: a test knows that a
transfer is under way without guessing how long it takes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK = 64 * 1024


def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


class WeightsServer:
    """Serve in-memory files over HTTP on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.commits: dict[str, str] = {}
        self.etags: dict[str, str | None] = {}
        self.requests: list[tuple[str, str]] = []
        self.delay = 0.0
        self.holding = threading.Event()  # set when a held transfer has sent its first chunk
        self._hold: str | None = None
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, data: bytes, mode: str = "ok") -> str:
        """Serve ``data`` at ``path``; returns its URL."""
        if mode not in ("ok", "cut", "short"):
            raise ValueError(f"mode={mode!r}: use ok, cut or short")
        self.files[path] = (data, mode)
        return self.endpoint + path

    def add_hub(
        self,
        repo_id: str,
        filename: str,
        data: bytes,
        revision: str = "main",
        mode: str = "ok",
        commit: str = COMMIT,
        sha256: str | None = "auto",
    ) -> str:
        """Serve ``data`` as ``filename`` of Hub model repo ``repo_id`` at ``revision`` (a branch pointing at
        ``commit``, or a commit hash) and at that commit; returns the resolve URL of ``revision``.

        ``sha256`` is what the Hub reports as the file's SHA-256 (``X-Linked-Etag``): "auto" the true one,
        another string a lie, None none at all (a plain git file: its ``ETag`` is a 40-hex git hash).
        """
        commit = revision if _is_commit(revision) else commit
        paths = [f"/{repo_id}/resolve/{revision}/{filename}", f"/{repo_id}/resolve/{commit}/{filename}"]
        for path in dict.fromkeys(paths):
            self.commits[path] = commit
            self.etags[path] = hashlib.sha256(data).hexdigest() if sha256 == "auto" else sha256
            self.add(path, data, mode)
        return self.endpoint + paths[0]

    def hold(self, path_part: str) -> None:
        """Pause the next GET of a path containing ``path_part`` after its first chunk, until :meth:`release`."""
        self.holding.clear()
        self._release.clear()
        self._hold = path_part

    def release(self) -> None:
        self._hold = None
        self._release.set()

    def count(self, method: str, path_part: str = "") -> int:
        """How many ``method`` requests were made for paths containing ``path_part``."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and path_part in p)

    def start(self) -> WeightsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WeightsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
                pass

            def _respond(self, with_body: bool) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server.requests.append((self.command, path))
                if path not in server.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, mode = server.files[path]
                body = data[: len(data) // 2] if mode in ("cut", "short") else data
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) if mode == "cut" else len(body)))
                if "/resolve/" in path:
                    self.send_header("X-Repo-Commit", server.commits.get(path, COMMIT))
                    sha = server.etags.get(path, hashlib.sha256(data).hexdigest())
                    if sha is None:  # a plain git file: only its git blob hash
                        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                    else:
                        self.send_header("ETag", f'"{sha}"')
                        self.send_header("X-Linked-Etag", f'"{sha}"')
                        # "short": the Hub's record of the file is right, the stored file is truncated
                        self.send_header("X-Linked-Size", str(len(body) if mode == "short" else len(data)))
                else:
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Connection", "close")
                self.end_headers()
                if not with_body:
                    return
                held = server._hold is not None and server._hold in path and self.command == "GET"
                try:
                    for start in range(0, len(body), CHUNK):
                        self.wfile.write(body[start : start + CHUNK])
                        self.wfile.flush()
                        if held and start == 0:
                            server.holding.set()
                            server._release.wait(timeout=120)
                        if server.delay:
                            time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
                self._respond(with_body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._respond(with_body=True)

        return Handler
