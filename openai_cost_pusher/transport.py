"""HTTP plumbing shared by both clients: sessions, timeouts, the retry policy, errors.

This is the only module that catches `requests` exceptions: it maps them once into the
package's error tree. It owns the one tenacity policy (retry on transient failures only,
wait at least `Retry-After`, stop after a budget of time or when a stop is requested).
It knows no endpoint and no payload.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
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
    PushUnavailable,
    Stopped,
    Transient,
    is_transient,
)

log = logging.getLogger(__name__)

USER_AGENT = f"openai-cost-pusher/{__version__}"
MAX_ATTEMPTS = 8


HttpSession = requests.Session
"""The session type the clients take; tests pass their own (the seam)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connect and read timeouts in seconds, passed to every call."""

    connect: float
    read: float

    @classmethod
    def from_read(cls, read: float) -> Timeouts:
        """Return timeouts with `read` and a connect timeout of at most 5 s."""
        return cls(connect=min(5.0, read), read=read)

    def pair(self) -> tuple[float, float]:
        """Return the `(connect, read)` tuple requests expects."""
        return (self.connect, self.read)


def make_session() -> requests.Session:
    """Return a session with our User-Agent and no hidden retry layer."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = True  # honour HTTPS_PROXY/NO_PROXY like any CLI tool
    return session


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Return `Retry-After` in seconds when it is a number, else None."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: the exponential wait applies instead
    return max(0.0, seconds)


def _reason(exc: Exception) -> str:
    """Return a short reason without the URL (requests repeats it at length)."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    for marker in (
        "Connection refused",
        "Name or service not known",
        "Temporary failure in name resolution",
        "timed out",
        "Connection reset",
        "Remote end closed connection",
        "No route to host",
        "certificate verify failed",
    ):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def send(
    session: HttpSession,
    method: str,
    url: str,
    *,
    what: str,
    timeouts: Timeouts,
    unavailable: type[Transient] | type[PushUnavailable],
    stop: threading.Event,
    **kwargs: Any,
) -> requests.Response:
    """Send one request; map network failures to `unavailable` naming `what`.

    Raises `Stopped` instead of sending when a stop was requested, so a retry loop
    woken from its backoff by the stop does not start another request.
    """
    if stop.is_set():
        raise Stopped(f"{what}: stop requested")
    try:
        return session.request(method, url, timeout=timeouts.pair(), **kwargs)
    except requests.ConnectTimeout as exc:
        msg = f"{what}: cannot connect within {timeouts.connect:g}s"
        raise unavailable(msg) from exc
    except requests.Timeout as exc:
        msg = f"{what}: no answer within {timeouts.read:g}s"
        raise unavailable(msg) from exc
    except requests.ConnectionError as exc:
        msg = f"{what}: cannot connect ({_reason(exc)})"
        raise unavailable(msg) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        # requests lets some urllib3 errors through unwrapped, such as the
        # LocationParseError of a host name with an empty label (`api..example.com`).
        msg = f"{what}: request failed ({_reason(exc)})"
        raise unavailable(msg) from exc


def iter_body(
    resp: requests.Response,
    *,
    what: str,
    unavailable: type[Transient] | type[PushUnavailable],
    chunk_bytes: int = 256 * 1024,
) -> Iterator[bytes]:
    """Yield a streamed body; map a connection lost midway to `unavailable`."""
    try:
        yield from resp.iter_content(chunk_bytes)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        msg = f"{what}: the answer broke off ({_reason(exc)})"
        raise unavailable(msg) from exc


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
    is set; a wait is cut short by `stop`. The last error is re-raised.
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
        reraise=True,
    )
