"""A tiny HTTP server on 127.0.0.1 whose answers a test writes: huge, hanging, redirecting, scripted.

`Loopback(answer)` calls `answer(request)` on a server thread for every GET; the handler writes
whatever it likes with `request.send(...)` / `request.stream(...)`. `requests` counts GETs per
path; `sent` counts body bytes the server managed to write before the client hung up.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Request(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.requests[self.path.split("?", 1)[0]] += 1
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up, as size tests expect
            owner.answer(self)

    def send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, total: int, chunk: bytes = b" " * 65_536) -> None:
        """A 200 JSON answer of `total` bytes, without Content-Length, written until the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        owner = self.server.owner
        written = 0
        try:
            while written < total:
                self.wfile.write(chunk)
                written += len(chunk)
                with owner.lock:
                    owner.sent += len(chunk)
        finally:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Loopback

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class Loopback:
    def __init__(self, answer: Callable[[Request], None]) -> None:
        self.answer = answer
        self.requests: Counter[str] = Counter()
        self.sent = 0
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), Request)
        self._server.owner = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> Loopback:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
