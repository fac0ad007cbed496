"""A real HTTP server on 127.0.0.1 for the fetch tests: routes, scripted misbehaviour, and a request log."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def image_bytes(fmt: str = "JPEG", size: int = 48, shade: int = 90) -> bytes:
    """A small real grayscale picture (a gradient, so every shade gives a different file)."""
    im = Image.linear_gradient("L").resize((size, size)).point(lambda v: (v + shade) % 256)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@dataclass
class Reply:
    """One scripted answer."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    ranges: bool = False


@dataclass
class Hit:
    """One request the server received."""

    t: float
    method: str
    path: str
    headers: dict[str, str]


class FakeWeb:
    """Serve routes (exact ``path?query`` first, then the bare path); everything else is 404."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply] | Callable] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                with web._lock:
                    web.hits.append(Hit(time.monotonic(), "GET", self.path, dict(self.headers)))
                route = web.routes.get(self.path) or web.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    web.send(self, Reply(b"not found", 404))
                elif callable(route):
                    route(self)
                else:
                    reply = route.pop(0) if len(route) > 1 else route[0]
                    web.send(self, reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # resets we cause ourselves are expected
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeWeb:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- routes ---------------------------------------------------------------------------------------------
    def add(self, path: str, body: bytes | str = b"", status: int = 200, content_type: str | None = None,
            headers: dict[str, str] | None = None, ranges: bool = False) -> None:
        data = body.encode() if isinstance(body, str) else body
        ctype = content_type or ("text/html; charset=utf-8" if isinstance(body, str) else "image/jpeg")
        self.routes[path] = [Reply(data, status, ctype, headers or {}, ranges)]

    def sequence(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def handler(self, path: str, fn: Callable) -> None:
        self.routes[path] = fn

    @staticmethod
    def send(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        body, status, extra = reply.body, reply.status, dict(reply.headers)
        rng = h.headers.get("Range")
        if reply.ranges and rng and rng.startswith("bytes=") and status == 200:
            start = int(rng[6:].split("-")[0])
            extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            body, status = body[start:], 206
        h.send_response(status)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(body)))
        if reply.ranges:
            h.send_header("Accept-Ranges", "bytes")
        for k, v in extra.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def cut(h: BaseHTTPRequestHandler, body: bytes, keep: int, reset: bool = True, ranges: bool = True) -> None:
        """Announce all of ``body``, send ``keep`` bytes, then drop the connection (RST when ``reset``)."""
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(body)))
        if ranges:
            h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        h.wfile.write(body[:keep])
        h.wfile.flush()
        time.sleep(0.05)  # let the client take the bytes before the connection goes
        if reset:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()

    # -- the log --------------------------------------------------------------------------------------------
    def requests_to(self, prefix: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path.startswith(prefix)]
