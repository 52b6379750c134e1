"""The optional health listener: `/healthz` for probes and `/metrics` for scrapers.

`health_status` is the pure rule; `HealthServer` serves it from a stdlib HTTP server in
a daemon thread. The listener only reads a snapshot the caller provides: it never
touches the cycle's state itself.

- `/healthz`: 200 `ok` while the last cycle succeeded and the last success is less
  than 3 intervals old; 503 with a short reason otherwise (no cycle yet, last cycle
  failed, stale).
- `/metrics`: the self-monitoring series, without timestamps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

STALE_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What the listener needs to answer, taken at request time."""

    now: float
    interval_s: float
    last_success: float | None
    last_ok: bool | None
    last_error: str | None
    metrics: bytes


def health_status(snap: HealthSnapshot) -> tuple[int, str]:
    """Return the HTTP status and the one-line reason for `/healthz`."""
    if snap.last_ok is None:
        return 503, "no cycle has finished yet"
    if not snap.last_ok:
        return 503, f"last cycle failed: {snap.last_error or 'unknown error'}"[:300]
    if snap.last_success is None:
        return 503, "no cycle has succeeded yet"
    age = snap.now - snap.last_success
    if age > STALE_INTERVALS * snap.interval_s:
        return 503, f"stale: last success {age:.0f}s ago"
    return 200, "ok"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        snap = self.server.snapshot()
        if self.path.split("?", 1)[0] == "/healthz":
            code, reason = health_status(snap)
            body = (reason + "\n").encode()
            ctype = "text/plain; charset=utf-8"
        elif self.path.split("?", 1)[0] == "/metrics":
            code, body = 200, snap.metrics
            ctype = "text/plain; version=0.0.4; charset=utf-8"
        else:
            code, body, ctype = 404, b"not found\n", "text/plain; charset=utf-8"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health request", extra={"request": format % args})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], snapshot: Callable[[], HealthSnapshot]
    ) -> None:
        super().__init__(address, _Handler)
        self.snapshot = snapshot


class HealthServer:
    """Serve `/healthz` and `/metrics` on `address` until `close()`."""

    def __init__(
        self, address: tuple[str, int], snapshot: Callable[[], HealthSnapshot]
    ) -> None:
        self._server = _Server(address, snapshot)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )
        self._thread.start()
        log.info(
            "health listener started", extra={"address": f"{address[0]}:{self.port}"}
        )

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
