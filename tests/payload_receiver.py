"""A CloudEvents receiver on 127.0.0.1 for the payload log tests: every POST's headers and body, in order.

``delay`` makes it a slow sink (it sleeps before answering each event).
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Received:
    """The events one receiver got: ``(headers with lower-cased names, parsed JSON body)``."""

    def __init__(self) -> None:
        self.events: list[tuple[dict[str, str], Any]] = []
        self.lock = threading.Lock()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[tuple[dict[str, str], Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.02)
        with self.lock:
            return list(self.events)


@contextlib.contextmanager
def receiver(delay: float = 0.0, status: int = 200) -> Iterator[tuple[str, Received]]:
    """Serve on a free loopback port; yield its URL and what it received; stop it on exit."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sink uses it

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if delay:
                time.sleep(delay)
            with received.lock:
                received.events.append(({k.lower(): v for k, v in self.headers.items()}, orjson.loads(body)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            """Quiet: the tests read what was received, not a log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
