"""HTTP plumbing of both clients: sessions, deadlines, body caps, retries, errors.

This is the only module that catches `requests` exceptions: it maps them once into the
package's error tree. It owns the one tenacity policy (retry on transient failures only,
wait at least `Retry-After`, stop after a budget of time or when a stop is requested).
It knows no endpoint and no payload.

Every call ends, and what it reads is bounded:

- **Per read**: no single socket read waits longer than `HTTP_TIMEOUT` (connect: 5 s or
  less). This alone does not end a call: a server that sends one byte every few
  seconds never trips it.
- **Per call**: the whole call (connect, headers and the body, streamed bodies
  included, up to the last byte the caller reads) must end within
  `DEADLINE_FACTOR` x `HTTP_TIMEOUT` (4 x 30 s = 2 minutes by default). The factor
  leaves room for the largest legitimate answers (a 100 MB costs page decoded as it
  streams) while a trickling server is cut off. The time a streamed answer waits
  while its reader does other work (`paused`: a day landing between two buckets) is
  left out. A watchdog thread shuts the call's
  socket down at the deadline, or as soon as the stop Event is set; the call then
  raises the caller's transient class (retried within `RETRY_BUDGET`) or `Stopped`.
  The watchdog touches a socket only while a call is blocked on it, so a connection
  back in the pool is never cut. It needs a session from `make_session`, whose
  connections report their sockets; with another session the deadline is checked
  between reads only.
- **Bodies**: an answer that is not a success is read up to `ERROR_BODY_BYTES`
  (64 KiB, plenty for a one-line message) and its connection closed, never drained. A
  success the caller does not stream is read up to `MAX_BODY_BYTES` (16 MiB); larger
  is refused. Streamed successes are read chunk by chunk through `iter_body`, and the
  caller bounds what it keeps.
- **Redirects** are never followed: a redirect could carry the admin key to another
  host. Callers report them with `redirect_target`.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    stop_when_event_set,
)
from tenacity.nap import sleep_using_event

from openai_cost_pusher import __version__
from openai_cost_pusher.errors import (
    PushRejected,
    PushUnavailable,
    RequestRejected,
    Stopped,
    Transient,
    is_transient,
)

log = logging.getLogger(__name__)

USER_AGENT = f"openai-cost-pusher/{__version__}"
MAX_ATTEMPTS = 8
DEADLINE_FACTOR = 4.0
"""A call's deadline is this many read timeouts (`HTTP_TIMEOUT`)."""
ERROR_BODY_BYTES = 64 * 1024
"""How much of an error answer is read: enough for any message worth showing."""
MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest success body read whole (not streamed)."""
CHUNK_BYTES = 256 * 1024
_POLL_S = 0.05
"""How often the watchdog looks at the calls under way."""

Unavailable = type[Transient] | type[PushUnavailable]

HttpSession = requests.Session
"""The session type the clients take; tests pass their own (the seam)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connect and read timeouts in seconds, passed to every call, and the deadline."""

    connect: float
    read: float

    @classmethod
    def from_read(cls, read: float) -> Timeouts:
        """Return timeouts with `read` and a connect timeout of at most 5 s."""
        return cls(connect=min(5.0, read), read=read)

    def pair(self) -> tuple[float, float]:
        """Return the `(connect, read)` tuple requests expects."""
        return (self.connect, self.read)

    @property
    def deadline(self) -> float:
        """Return the seconds a whole call may take: `DEADLINE_FACTOR` reads."""
        return max(DEADLINE_FACTOR * self.read, self.connect + self.read)


# -- the deadline watchdog -----------------------------------------------------------


class _Guard:
    """One call's deadline, stop Event and connection, watched while it blocks."""

    def __init__(
        self, what: str, unavailable: Unavailable, seconds: float, stop: threading.Event
    ) -> None:
        self.what = what
        self.unavailable = unavailable
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.stop = stop
        self.conn: Any = None
        self.fired: str | None = None
        self.cut = False

    def due(self, now: float) -> str | None:
        """Return why the call must end now (`stop` or `deadline`), or None."""
        if self.stop.is_set():
            return "stop"
        if now >= self.deadline:
            return "deadline"
        return None

    def error(self) -> Stopped | Transient | PushUnavailable:
        """Return the error that ends the call once the watchdog has fired."""
        if self.fired == "stop":
            return Stopped(f"{self.what}: stop requested")
        return self.unavailable(
            f"{self.what}: no complete answer within {self.seconds:g}s, the deadline "
            f"of one call ({DEADLINE_FACTOR:g} x HTTP_TIMEOUT): the server sends too "
            "slowly; raise HTTP_TIMEOUT if it is only slow"
        )

    def raise_if_fired(self, cause: BaseException | None = None) -> None:
        """Raise the deadline or stop error if the watchdog fired during the call."""
        if self.fired is not None:
            raise self.error() from cause


def _shutdown(conn: Any) -> bool:
    """Shut the connection's socket down, waking a blocked read; True when done."""
    sock = getattr(conn, "sock", None)
    if not isinstance(sock, socket.socket):
        return False  # not connected yet: tried again at the next look
    try:
        # the plain socket's shutdown, also for TLS: it wakes a read blocked in
        # another thread without touching the TLS object that thread is using
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        return False
    return True


class _Watchdog:
    """One daemon thread that cuts off calls blocked past their deadline or stop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[_Guard] = set()
        self._thread: threading.Thread | None = None

    def enter(self, guard: _Guard) -> None:
        """Watch `guard` while its call blocks."""
        with self._cond:
            self._busy.add(guard)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="http-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def leave(self, guard: _Guard) -> None:
        """Stop watching `guard`; after this its socket is never touched."""
        with self._cond:
            self._busy.discard(guard)

    def _run(self) -> None:
        with self._cond:
            while True:
                while not self._busy:
                    self._cond.wait()
                now = time.monotonic()
                for guard in self._busy:
                    reason = guard.due(now)
                    if reason is not None and not guard.cut:
                        guard.fired = guard.fired or reason
                        guard.cut = _shutdown(guard.conn)
                self._cond.wait(_POLL_S)


_WATCHDOG = _Watchdog()
_LOCAL = threading.local()
_GUARDS: weakref.WeakKeyDictionary[requests.Response, _Guard] = (
    weakref.WeakKeyDictionary()
)
"""The guard of each response `send` returned, for reading its body."""


@contextmanager
def _blocking(guard: _Guard | None) -> Iterator[None]:
    """Run a blocking step of `guard`'s call under the watchdog.

    Raises the deadline or stop error at once when either is already due.
    """
    if guard is None:
        yield
        return
    reason = guard.due(time.monotonic())
    if reason is not None:
        guard.fired = guard.fired or reason
        raise guard.error()
    _LOCAL.guard = guard
    _WATCHDOG.enter(guard)
    try:
        yield
    finally:
        _WATCHDOG.leave(guard)
        _LOCAL.guard = None


def _adopt(conn: object) -> None:
    """Tell the call under way in this thread which connection it uses."""
    guard = getattr(_LOCAL, "guard", None)
    if guard is not None:
        guard.conn = conn


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that reports itself to the call using it."""

    def connect(self) -> None:
        _adopt(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _adopt(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    """An HTTPS connection that reports itself to the call using it."""

    def connect(self) -> None:
        _adopt(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _adopt(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}


def _watch_pools(manager: Any) -> None:
    """Make a pool manager open watched connections (SOCKS managers are left)."""
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if (
        isinstance(classes, dict)
        and classes.get("https") is urllib3.HTTPSConnectionPool
    ):
        manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """The default adapter, with connections the deadline watchdog can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


def make_session() -> requests.Session:
    """Return a session with our User-Agent, deadlines and no hidden retry layer."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = True  # honour HTTPS_PROXY/NO_PROXY like any CLI tool
    for prefix in ("http://", "https://"):
        # a usage fetch holds one answer open per endpoint while it lands a day
        session.mount(prefix, _WatchedAdapter(max_retries=0, pool_maxsize=16))
    return session


# -- messages ------------------------------------------------------------------------


def display_url(url: str) -> str:
    """Return `url` fit for a message: scheme, host, port and path only.

    User info, query and fragment are dropped: they may hold credentials.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "the configured URL"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def redirect_target(resp: requests.Response) -> str:
    """Return the host (and port) a redirect answer points to, for a message."""
    location = resp.headers.get("Location", "").strip()
    if not location:
        return "no location given"
    try:
        parts = urlsplit(urljoin(resp.url or "", location))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an unreadable location"
    shown = "".join(ch for ch in host if ch.isprintable())[:100] or "an unnamed host"
    return f"{shown}:{port}" if port is not None else shown


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Return `Retry-After` in seconds when it is a finite number, else None."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: the exponential wait applies instead
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


_DNS_MARKERS = (
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname provided",
    "No address associated with hostname",
    "Failed to resolve",
)


def _text(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else ""


def _reason(exc: Exception) -> str:
    """Return a short reason without the URL (requests repeats it at length)."""
    text = _text(exc)
    for marker in (
        "Connection refused",
        *_DNS_MARKERS[:2],
        "timed out",
        "Connection reset",
        "Remote end closed connection",
        "No route to host",
        "certificate verify failed",
        "wrong version number",
    ):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def _cannot_connect(exc: requests.ConnectionError, what: str, url: str) -> str:
    """Return a message telling refused, unknown host and TLS failures apart."""
    text, shown = _text(exc), display_url(url)
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"{what}: cannot connect (TLS error: {_reason(exc)}) to {shown}; check "
            "the URL's scheme (http or https) and port, and the server's certificate"
        )
    if "Connection refused" in text:
        return (
            f"{what}: cannot connect (connection refused) to {shown}; check that the "
            "server runs and the URL's host and port"
        )
    if any(marker in text for marker in _DNS_MARKERS):
        return (
            f"{what}: cannot connect (unknown host: DNS lookup failed) to {shown}; "
            "check the host name in the URL"
        )
    return f"{what}: cannot connect ({_reason(exc)}) to {shown}"


def _rejected_header(what: str, unavailable: Unavailable) -> Exception:
    """Return the error for a header HTTP cannot carry; the value is never shown."""
    cls = RequestRejected if issubclass(unavailable, Transient) else PushRejected
    return cls(
        f"{what}: a request header holds characters HTTP cannot carry; check that "
        "the secrets (OPENAI_ADMIN_KEY, VM_BEARER_TOKEN) are plain ASCII"
    )


# -- one call ------------------------------------------------------------------------


def _request(
    session: HttpSession,
    method: str,
    url: str,
    guard: _Guard,
    timeouts: Timeouts,
    kwargs: dict[str, Any],
) -> requests.Response:
    """Send the request and read the headers under the watchdog; map failures."""
    what, unavailable = guard.what, guard.unavailable
    try:
        with _blocking(guard):
            return session.request(method, url, timeout=timeouts.pair(), **kwargs)
    except requests.ConnectTimeout as exc:
        guard.raise_if_fired(exc)
        msg = (
            f"{what}: cannot connect to {display_url(url)} within {timeouts.connect:g}s"
        )
        raise unavailable(msg) from exc
    except requests.Timeout as exc:
        guard.raise_if_fired(exc)
        msg = f"{what}: no answer within {timeouts.read:g}s"
        raise unavailable(msg) from exc
    except requests.ConnectionError as exc:
        guard.raise_if_fired(exc)
        raise unavailable(_cannot_connect(exc, what, url)) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        # requests lets some urllib3 errors through unwrapped, such as the
        # LocationParseError of a host name with an empty label (`api..example.com`).
        guard.raise_if_fired(exc)
        msg = f"{what}: request failed ({_reason(exc)})"
        raise unavailable(msg) from exc
    except UnicodeEncodeError:
        raise _rejected_header(what, unavailable) from None


def send(
    session: HttpSession,
    method: str,
    url: str,
    *,
    what: str,
    timeouts: Timeouts,
    unavailable: Unavailable,
    stop: threading.Event,
    **kwargs: Any,
) -> requests.Response:
    """Send one request; map network failures to `unavailable` naming `what`.

    Raises `Stopped` instead of sending when a stop was requested, so a retry loop
    woken from its backoff by the stop does not start another request. The call has
    a deadline (see the module notes); redirects are not followed. Unless the caller
    streams a success (`stream=True`), the body is read here, within its cap, so
    `resp.content` and `resp.text` are bounded.
    """
    if stop.is_set():
        raise Stopped(f"{what}: stop requested")
    stream = bool(kwargs.pop("stream", False))
    kwargs.setdefault("allow_redirects", False)
    guard = _Guard(what, unavailable, timeouts.deadline, stop)
    resp = _request(session, method, url, guard, timeouts, {"stream": True, **kwargs})
    _GUARDS[resp] = guard
    if guard.fired is not None:
        resp.close()
        guard.raise_if_fired()
    if not (stream and 200 <= resp.status_code < 300):
        _preload(resp, what=what, unavailable=unavailable)
    return resp


def _preload(resp: requests.Response, *, what: str, unavailable: Unavailable) -> None:
    """Read a body the caller does not stream, within its cap, into `resp.content`."""
    if resp.raw is None:
        return  # a response built by hand: nothing to read
    if 200 <= resp.status_code < 300:
        body, whole = read_body(
            resp, limit=MAX_BODY_BYTES, what=what, unavailable=unavailable
        )
        if not whole:
            raise unavailable(
                f"{what}: the answer is larger than {MAX_BODY_BYTES >> 20} MiB, more "
                "than any answer this client asks for; check the URL"
            )
    else:
        try:
            body, _ = read_body(
                resp, limit=ERROR_BODY_BYTES, what=what, unavailable=unavailable
            )
        except (Transient, PushUnavailable):
            resp.close()
            body = b""  # the status says what matters; the message is a bonus
    resp._content = body


def read_body(
    resp: requests.Response, *, limit: int, what: str, unavailable: Unavailable
) -> tuple[bytes, bool]:
    """Return at most `limit` bytes of the body and whether that is all of it.

    Past `limit` the connection is closed rather than drained, so a huge body costs
    no more than `limit`.
    """
    if resp.raw is None:
        return b"", True
    body = bytearray()
    chunks = iter_body(
        resp,
        what=what,
        unavailable=unavailable,
        chunk_bytes=min(limit + 1, CHUNK_BYTES),
    )
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            chunks.close()
            resp.close()
            del body[limit:]  # in place: no second copy of a large body
            return bytes(body), False
    return bytes(body), True


def iter_body(
    resp: requests.Response,
    *,
    what: str,
    unavailable: Unavailable,
    chunk_bytes: int = CHUNK_BYTES,
) -> Generator[bytes, None, None]:
    """Yield a streamed body within the call's deadline; map failures to `unavailable`.

    A connection lost midway becomes `unavailable`; the deadline or a stop ends the
    body with the error `send` would raise.
    """
    guard = _GUARDS.get(resp)
    if guard is not None and guard.conn is None:
        guard.conn = getattr(resp.raw, "connection", None)
    chunks = resp.iter_content(chunk_bytes)
    while True:
        try:
            with _blocking(guard):
                chunk = next(chunks, None)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if guard is not None:
                guard.raise_if_fired(exc)
            msg = f"{what}: the answer broke off ({_reason(exc)})"
            raise unavailable(msg) from exc
        if guard is not None:
            guard.raise_if_fired()  # data after a cut-off is not trusted
        if chunk is None:
            return
        yield chunk


@contextmanager
def paused(resp: requests.Response) -> Iterator[None]:
    """Leave the time spent in the block out of `resp`'s deadline: a streamed answer
    whose reader lands a day between two of its buckets waits for that reader, not
    for the server. The deadline still bounds the time the call spends with the
    server; each read keeps its own timeout."""
    guard = _GUARDS.get(resp)
    began = time.monotonic()
    try:
        yield
    finally:
        if guard is not None:
            guard.deadline += time.monotonic() - began


# -- retries -------------------------------------------------------------------------


class _WaitRetryAfter:
    """Wait the longer of the server's `Retry-After` and an exponential backoff.

    The backoff is 0.5 s doubled per attempt, capped at 30 s, plus up to 0.5 s of
    jitter (tenacity's `wait_exponential_jitter` shape, whose parameter names changed
    between the 8.x and 9.x releases we support).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def __call__(self, state: RetryCallState) -> float:
        exponent = max(0, state.attempt_number - 1)
        backoff = min(30.0, 0.5 * 2.0**exponent) + self._rng.uniform(0, 0.5)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(backoff, retry_after or 0.0)


class _GiveUp:
    """Re-raise the last error when retrying stops, saying why if it is the budget.

    A `Retry-After` longer than what is left of the budget ends the call at once,
    with a message naming `RETRY_BUDGET` and the server's wait.
    """

    def __init__(self, budget_s: float, stop: threading.Event) -> None:
        self._budget_s = budget_s
        self._stop = stop

    def __call__(self, state: RetryCallState) -> NoReturn:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, BaseException):
            raise AssertionError("unreachable: retries stop only after a failure")
        retry_after = getattr(exc, "retry_after", None)
        left = max(0.0, self._budget_s - (state.seconds_since_start or 0.0))
        if (
            isinstance(exc, Transient | PushUnavailable)
            and retry_after is not None
            and retry_after > left
            and not self._stop.is_set()
        ):
            raise type(exc)(
                f"{exc}; the server asks to retry after {retry_after:g}s "
                f"(Retry-After), more than the {left:.0f}s left of RETRY_BUDGET "
                f"({self._budget_s:g}s): gave up; raise RETRY_BUDGET above "
                f"{retry_after:g}s to wait it out",
                retry_after=retry_after,
            ) from exc
        raise exc


def _log_retry(state: RetryCallState) -> None:
    """Log one WARNING per retry, naming the failure and the wait."""
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "retrying: %s",
        exc,
        extra={
            "attempt": state.attempt_number,
            "wait_s": round(state.upcoming_sleep, 3),
        },
    )


def retry_policy(
    budget_s: float,
    stop: threading.Event,
    *,
    sleep: Callable[[float], None] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Retrying:
    """Return the one retry policy both clients use.

    Retries transient failures only, waits at least `Retry-After`, and gives up when
    `max_attempts` is reached, when the next wait would pass `budget_s`, or when `stop`
    is set; a wait is cut short by `stop`. The last error is re-raised, reworded when
    a `Retry-After` longer than the rest of the budget ended it.
    """
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=_WaitRetryAfter(),
        stop=(
            stop_after_attempt(max_attempts)
            | stop_before_delay(budget_s)
            | stop_when_event_set(stop)
        ),
        sleep=sleep if sleep is not None else sleep_using_event(stop),
        before_sleep=_log_retry,
        retry_error_callback=_GiveUp(budget_s, stop),
        reraise=True,
    )
