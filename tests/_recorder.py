"""A real HTTP server on 127.0.0.1 that answers 200 to every request and records it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from _http_server import serve

Request = tuple[str, str, bytes]  # method, path (with its query), body


@contextlib.contextmanager
def recording_server() -> Iterator[tuple[int, list[Request]]]:
    """Yield (port, requests received so far)."""
    received: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _any

        def log_message(self, *args: Any) -> None:
            pass

    with serve(Handler) as base:
        yield urlsplit(base).port, received
