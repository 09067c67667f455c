"""A tiny HTTP server for download tests: serves a folder on 127.0.0.1 with Range support.

``serve(folder)`` is a context manager yielding a :class:`Server` whose ``url`` is the base URL.
Knobs for failure injection: ``server.cut_after[name] = n`` makes the next response for
``name`` stop after ``n`` bytes (the connection is closed, as a flaky network would);
``server.no_range = True`` makes the server ignore Range headers (full 200 responses).
Every request is recorded in ``server.requests`` as ``(path, range_header, status)``.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path


class Server:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.cut_after: dict[str, int] = {}
        self.no_range = False
        self.requests: list[tuple[str, str | None, int]] = []
        self.url = ""


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            rel = self.path.lstrip("/").split("?", 1)[0]
            path = server.folder / rel
            rng = self.headers.get("Range")
            if not path.is_file():
                server.requests.append((rel, rng, 404))
                self.send_error(404)
                return
            data = path.read_bytes()
            size = len(data)
            start, status = 0, 200
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if m and not server.no_range:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
                if start >= size:
                    server.requests.append((rel, rng, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = data[start : end + 1]
                status = 206
            server.requests.append((rel, rng, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{size}")
            self.end_headers()
            cut = server.cut_after.pop(rel, None)
            if cut is not None:
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.wfile.write(data)

    return Handler


@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[Server]:
    server = Server(Path(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
