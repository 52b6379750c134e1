"""A fake Slack incoming webhook: a stdlib HTTP server on 127.0.0.1 that records posts.

It answers every POST with Slack's `200 ok` and keeps the decoded JSON payloads, so
tests can assert what Alertmanager sent. It knows nothing about alerts.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    """Record one webhook POST on the owning server."""

    server: FakeSlackServer

    def do_POST(self) -> None:
        """Store the JSON payload and answer like Slack does."""
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.record(self.path, json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class FakeSlackServer(ThreadingHTTPServer):
    """The fake webhook, served from a daemon thread until `stop()`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._lock = threading.Lock()
        self._payloads: list[tuple[str, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return the webhook URL to give Alertmanager."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/services/T000/B000/XXXX"

    def record(self, path: str, payload: dict[str, Any]) -> None:
        """Keep one received payload."""
        with self._lock:
            self._payloads.append((path, payload))

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """Return the payloads received so far, oldest first."""
        with self._lock:
            return [payload for _path, payload in self._payloads]

    def wait_for(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until `count` payloads arrived (or the timeout), and return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.payloads) < count:
            time.sleep(0.1)
        return self.payloads

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        self._thread.join(5)
