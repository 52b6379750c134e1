"""The optional health listener: `/healthz`, `/livez` and `/metrics`.

`health_status` and `liveness_status` are the pure rules; `HealthServer` serves them
from a small, bounded HTTP server in daemon threads. The listener only reads a
snapshot the caller provides: it never touches the cycle's state itself, and nothing
in it waits on the cycle, so it never blocks the pusher nor the pusher it.

- `/healthz` (readiness: are costs arriving?): 200 while the last successful costs
  cycle is at most `STALE_INTERVALS` (3) intervals old, also when the cycle after it
  failed (the body says so); before the first success, 200 during a start-up grace of
  the same 3 intervals from start (`starting: ...`); 503 with the reason once the last
  success, or the start without one, is older than that. Upstream error text in the
  body is redacted by the same `Redactor` as the logs, then cut to one short line.
- `/livez` (liveness: is the cycle loop alive?): 200 while the loop's `Heartbeat` is
  at most `live_bound` old: max(2 intervals, 5 minutes, 2 x one HTTP call with its
  retries). The loop beats at least every `HEARTBEAT_TICK_S` while it waits and on
  every Admin API request during a cycle, so an outage or a long retry never fails
  it; a dead or deadlocked loop does.
- `/metrics`: the self-monitoring series, without timestamps.

The server holds at most `MAX_CONNECTIONS` connections. A connection that has sent
nothing is idle: it costs no thread, is closed after `CONNECTION_TIMEOUT_S`, and is
the first to go (oldest first) when a new one arrives at the cap; when every held
connection is being served, a new one is closed at once. A connection that has sent
bytes is answered by one of `WORKERS` threads, with `CONNECTION_TIMEOUT_S` per read
and at most `MAX_CONNECTION_S` from accept to close. One request per connection
(HTTP/1.0).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from openai_cost_pusher.logs import Redactor

log = logging.getLogger(__name__)

STALE_INTERVALS = 3
"""`/healthz` is 503 once the last success (or the start) is older than this many
intervals; the Kubernetes readiness probe and `OpenAICostPusherStale` use the same."""
LIVE_INTERVALS = 2
LIVE_MIN_S = 300.0
HEARTBEAT_TICK_S = 5.0
"""Longest wait of the cycle loop between two heartbeats while it waits."""
MAX_REASON = 300
"""Longest `/healthz` reason, in characters, after redaction."""

MAX_CONNECTIONS = 16
WORKERS = 4
CONNECTION_TIMEOUT_S = 5.0
MAX_CONNECTION_S = 10.0
_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What the listener needs to answer, taken at request time.

    `now`, `started` and `last_success` are on the pusher's (wall) clock;
    `heartbeat_age_s` is how long ago the cycle loop last showed a sign of life
    (None: no loop to watch), `live_after_s` the bound `/livez` allows (None:
    `live_bound(interval_s)`).
    """

    now: float
    interval_s: float
    last_success: float | None
    last_ok: bool | None
    last_error: str | None
    metrics: bytes
    started: float | None = None
    heartbeat_age_s: float | None = None
    live_after_s: float | None = None
    notes: tuple[str, ...] = ()
    """What the body adds whatever the status: values not yet confirmed by the
    store, days withheld for a malformed answer."""


def live_bound(interval_s: float, call_s: float = 0.0) -> float:
    """Return how long the loop may go without a heartbeat before `/livez` is 503.

    `call_s` is the longest one HTTP call may take with its retries (RETRY_BUDGET
    plus HTTP_TIMEOUT): a cycle beats on every request, so the widest gap between
    two beats is about one such call.
    """
    return max(LIVE_INTERVALS * interval_s, LIVE_MIN_S, 2 * call_s)


def _same(text: str) -> str:
    return text


def health_status(
    snap: HealthSnapshot, redact: Callable[[str], str] = _same
) -> tuple[int, str]:
    """Return the HTTP status and the one-line reason for `/healthz`.

    The reason is redacted before it is cut to `MAX_REASON` characters, so a cut can
    never leave part of a secret behind.
    """
    limit = STALE_INTERVALS * snap.interval_s
    failed = ""
    if snap.last_ok is False:
        failed = f"; last cycle failed: {snap.last_error or 'unknown error'}"
    failed += "".join(f"; {note}" for note in snap.notes)
    if snap.last_success is not None:
        age = snap.now - snap.last_success
        if age > limit:
            code, head = 503, f"stale: last success {age:.0f}s ago"
        elif failed:
            code, head = 200, f"ok: last success {age:.0f}s ago"
        else:
            return 200, "ok"
    else:
        what = "finished" if snap.last_ok is None else "succeeded"
        since = None if snap.started is None else snap.now - snap.started
        if since is not None and since <= limit:
            code, head = (
                200,
                f"starting: no cycle has {what} yet ({since:.0f}s since start)",
            )
        elif since is not None:
            code, head = 503, f"no cycle has {what} yet ({since:.0f}s since start)"
        else:
            code, head = 503, f"no cycle has {what} yet"
    reason = " ".join(redact(head + failed).split())
    return code, reason[:MAX_REASON]


def liveness_status(snap: HealthSnapshot) -> tuple[int, str]:
    """Return the HTTP status and the one-line reason for `/livez`."""
    bound = snap.live_after_s
    if bound is None:
        bound = live_bound(snap.interval_s)
    age = snap.heartbeat_age_s
    if age is None:
        return 503, "no cycle loop"
    if age > bound:
        return 503, f"stuck: cycle loop silent for {age:.0f}s (limit {bound:.0f}s)"
    return 200, f"ok: cycle loop seen {age:.0f}s ago"


class Heartbeat:
    """When the cycle loop last showed a sign of life, on a monotonic clock.

    Written by the loop's thread, read by the listener's: one float, no lock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        """Record a sign of life now."""
        self._last = self._clock()

    def age(self) -> float:
        """Return the seconds since the last beat."""
        return max(0.0, self._clock() - self._last)


_TEXT = "text/plain; charset=utf-8"
_EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CONNECTION_TIMEOUT_S  # per read of the request

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        ctype = _TEXT
        try:
            if path == "/healthz":
                code, reason = health_status(self.server.snapshot(), self.server.redact)
                body = (reason + "\n").encode()
            elif path == "/livez":
                code, reason = liveness_status(self.server.snapshot())
                body = (reason + "\n").encode()
            elif path == "/metrics":
                code, body = 200, self.server.snapshot().metrics
                ctype = _EXPOSITION
            else:
                code, body = 404, b"not found\n"
        except Exception:  # a bug in a snapshot must not take the listener down
            log.exception("health listener: cannot answer %s", path)
            code, body = 500, b"internal error\n"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health request", extra={"request": format % args})


class _Server(socketserver.TCPServer):
    """A TCP server with a bounded number of connections and threads.

    One gatekeeper thread accepts connections and watches idle ones with a selector;
    a connection that sends bytes goes to one of `WORKERS` threads. See the module
    docstring for the limits.
    """

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        snapshot: Callable[[], HealthSnapshot],
        redact: Callable[[str], str],
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.snapshot = snapshot
        self.redact = redact
        self.socket.setblocking(False)
        self._lock = threading.Lock()
        self._idle: dict[socket.socket, tuple[float, Any]] = {}
        self._busy: dict[socket.socket, float] = {}
        self._ready: queue.SimpleQueue[tuple[socket.socket, Any] | None] = (
            queue.SimpleQueue()
        )
        self._closing = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ)

    # -- the gatekeeper thread -------------------------------------------------------

    def gatekeep(self) -> None:
        """Accept, watch idle connections and enforce deadlines until `stop()`."""
        while not self._closing.is_set():
            try:
                self._turn()
            except Exception:  # keep listening: /livez depends on it
                log.exception("health listener: unexpected error")
                self._closing.wait(_POLL_S)

    def _turn(self) -> None:
        for key, _ in self._selector.select(timeout=_POLL_S):
            if key.fileobj is self.socket:
                self._accept()
            elif key.fileobj in self._idle:  # not evicted earlier in this batch
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                self._hand_over(conn)
        self._expire(time.monotonic())

    def _held(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy)

    def _accept(self) -> None:
        for _ in range(4 * MAX_CONNECTIONS):  # a burst, then look at the others
            try:
                conn, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: back off, do not spin
                log.debug("health listener: accept failed", extra={"error": str(exc)})
                self._closing.wait(_POLL_S)
                return
            if self._held() >= MAX_CONNECTIONS and not self._evict_idle():
                self._close(conn)  # every held connection is being served
                continue
            conn.setblocking(False)
            self._idle[conn] = (time.monotonic(), addr)
            self._selector.register(conn, selectors.EVENT_READ)

    def _evict_idle(self) -> bool:
        """Close the oldest connection that has sent nothing; False if there is none."""
        oldest = next(iter(self._idle), None)
        if oldest is None:
            return False
        self._drop_idle(oldest)
        return True

    def _drop_idle(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        del self._idle[conn]
        self._close(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        accepted, addr = self._idle.pop(conn)
        with self._lock:
            self._busy[conn] = accepted + MAX_CONNECTION_S
        self._ready.put((conn, addr))

    def _expire(self, now: float) -> None:
        for conn, (accepted, _) in list(self._idle.items()):
            if now - accepted >= CONNECTION_TIMEOUT_S:
                self._drop_idle(conn)
        with self._lock:
            for conn, deadline in self._busy.items():
                if now >= deadline:
                    # the worker owns the socket and closes it; this ends its read
                    self._busy[conn] = float("inf")
                    self._shutdown(conn)

    # -- the worker threads ----------------------------------------------------------

    def work(self) -> None:
        """Answer connections handed over by the gatekeeper until `stop()`."""
        while (item := self._ready.get()) is not None:
            conn, addr = item
            try:
                conn.setblocking(True)
                self.finish_request(conn, addr)
            except Exception as exc:  # a client that went away, a reset, a timeout
                log.debug("health listener: request failed", extra={"error": str(exc)})
            finally:
                with self._lock:
                    del self._busy[conn]
                self.shutdown_request(conn)  # FIN after the answer, then close

    # -- shared ------------------------------------------------------------------------

    @staticmethod
    def _shutdown(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _close(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.close()

    def stop(
        self, gatekeeper: threading.Thread, workers: list[threading.Thread]
    ) -> None:
        """Stop the threads, close every connection and the listening socket."""
        self._closing.set()
        gatekeeper.join(2 * _POLL_S + 1)
        for conn in list(self._idle):
            self._drop_idle(conn)
        with self._lock:
            for conn in self._busy:
                self._shutdown(conn)
        for _ in workers:
            self._ready.put(None)
        for worker in workers:
            worker.join(2.0)
        self._selector.close()
        self.server_close()


class HealthServer:
    """Serve `/healthz`, `/livez` and `/metrics` on `address` until `close()`.

    `redact` hides secrets in the `/healthz` reason (`logs.Redactor.for_settings`,
    the same step the logs use); the default knows no secret.
    """

    def __init__(
        self,
        address: tuple[str, int],
        snapshot: Callable[[], HealthSnapshot],
        *,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._server = _Server(address, snapshot, redact or Redactor())
        self.port: int = self._server.server_address[1]
        self._gatekeeper = threading.Thread(
            target=self._server.gatekeep, name="health", daemon=True
        )
        self._workers = [
            threading.Thread(target=self._server.work, name=f"health-{n}", daemon=True)
            for n in range(WORKERS)
        ]
        for thread in (self._gatekeeper, *self._workers):
            thread.start()
        log.info(
            "health listener started", extra={"address": f"{address[0]}:{self.port}"}
        )

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.stop(self._gatekeeper, self._workers)
