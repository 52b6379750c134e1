"""The VictoriaMetrics push client: gzip, auth, retries, 4xx versus 5xx.

POSTs Prometheus text chunks to the import URL of a single-node VictoriaMetrics, a
cluster's vminsert, vmagent or vmauth. It also checks once, where it can, that the
server runs with `-dedup.minScrapeInterval`, on which exact daily values depend. It
knows nothing about what the bytes mean.
"""

from __future__ import annotations

import base64
import gzip
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from tenacity import Retrying

from openai_cost_pusher.config import IMPORT_SUFFIX, Secret
from openai_cost_pusher.errors import PushError, PushRejected, PushUnavailable, Stopped
from openai_cost_pusher.transport import (
    HttpSession,
    Timeouts,
    display_url,
    parse_retry_after,
    redirect_target,
    send,
)

log = logging.getLogger(__name__)

GZIP_LEVEL = 1
"""Level 1 compresses exposition text about 8:1 at a fraction of level 6's CPU."""

_DEDUP_FLAG = re.compile(r'^-dedup\.minScrapeInterval="?([^"\s]*)"?', re.MULTILINE)
_PROXY_FLAG = re.compile(r"^-(?:auth\.config|remoteWrite\.url)=", re.MULTILINE)
"""Flags that vmauth and vmagent always list in `/flags`: vmauth answers `/flags`
itself (it proxies only the other paths), so its list says nothing about storage."""


@dataclass(slots=True)
class PushStats:
    """What one push sent: requests, raw and gzipped bytes, and where it went."""

    requests: int = 0
    raw_bytes: int = 0
    gzip_bytes: int = 0
    where: str = "stored"
    """`stored` (VictoriaMetrics accepted it), `printed` (`--dry-run`) or
    `nothing answered` (the demo with no VictoriaMetrics: nothing went anywhere)."""


STORED, PRINTED, UNANSWERED = "stored", "printed", "nothing answered"


def auth_header(
    username: str | None, password: Secret | None, bearer: Secret | None
) -> Secret | None:
    """Return the Authorization header value for basic or bearer auth, or None."""
    if bearer is not None:
        return Secret(f"Bearer {bearer.reveal()}")
    if username:
        pair = f"{username}:{password.reveal() if password else ''}".encode()
        return Secret("Basic " + base64.b64encode(pair).decode())
    return None


def _server_message(text: str) -> str:
    return " ".join(text.split())[:200]


def _size(n: int) -> str:
    """Return a byte count for a message: `512 B`, `96.0 KiB`, `3.1 MiB`."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _refusal(
    resp: requests.Response, what: str, url: str, gzip_bytes: int, raw_bytes: int
) -> PushError:
    """Return the error for an answer other than 2xx, saying what to change.

    `send` has read at most 64 KiB of the body, so `resp.text` is bounded here.
    """
    status = resp.status_code
    if status == 429 or status >= 500:
        return PushUnavailable(
            f"{what}: HTTP {status}", retry_after=parse_retry_after(resp.headers)
        )
    if status in (401, 403):
        return PushRejected(
            f"{what}: credentials rejected (HTTP {status}) by {display_url(url)}; "
            "check VM_USERNAME/VM_PASSWORD or VM_BEARER_TOKEN"
        )
    if 300 <= status < 400:
        return PushRejected(
            f"{what}: HTTP {status} redirect to {redirect_target(resp)}, not "
            "followed (credentials go to no other host); set VM_PUSH_URL to the "
            "final import URL"
        )
    message = _server_message(resp.text)
    suffix = f": {message}" if message else ""
    if status == 413:
        return PushRejected(
            f"{what}: HTTP 413, body too large: the server refused "
            f"{_size(gzip_bytes)} of gzip ({_size(raw_bytes)} of text); raise the "
            "request size limit of what answered (a proxy's body limit such as "
            "nginx client_max_body_size, or VictoriaMetrics -maxInsertRequestSize)"
            f"{suffix}"
        )
    return PushRejected(f"{what}: HTTP {status}{suffix}")


class VmClient:
    """Pushes exposition chunks to one import URL.

    One retry budget per cycle: once the retries of one push ran out on an
    unavailable server, every later push of the same cycle fails at once with the
    same error, until `begin_cycle` starts the next cycle.
    """

    def __init__(
        self,
        session: HttpSession,
        push_url: str,
        *,
        authorization: Secret | None,
        timeouts: Timeouts,
        retrying: Callable[[], Retrying],
        stop: threading.Event,
    ) -> None:
        self._session = session
        self._url = push_url
        self._auth = authorization
        self._timeouts = timeouts
        self._retrying = retrying
        self._stop = stop
        self._exhausted: PushUnavailable | None = None

    def begin_cycle(self) -> None:
        """Give the next pushes a fresh retry budget."""
        self._exhausted = None

    def _headers(self, **more: str) -> dict[str, str]:
        headers = dict(more)
        if self._auth is not None:
            headers["Authorization"] = self._auth.reveal()
        return headers

    def _post_once(self, body: bytes, raw_bytes: int) -> None:
        what = "push to VictoriaMetrics"
        resp = send(
            self._session,
            "POST",
            self._url,
            what=what,
            timeouts=self._timeouts,
            unavailable=PushUnavailable,
            stop=self._stop,
            data=body,
            allow_redirects=False,
            headers=self._headers(
                **{
                    "Content-Encoding": "gzip",
                    "Content-Type": "text/plain; version=0.0.4",
                }
            ),
        )
        if 200 <= resp.status_code < 300:
            return
        raise _refusal(resp, what, self._url, len(body), raw_bytes)

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        """Gzip and POST each chunk, retrying transient failures; raise on failure."""
        stats = PushStats()
        for chunk in chunks:
            if self._exhausted is not None:
                raise self._exhausted
            body = gzip.compress(chunk, compresslevel=GZIP_LEVEL, mtime=0)
            try:
                for attempt in self._retrying():
                    with attempt:
                        self._post_once(body, len(chunk))
            except PushUnavailable as exc:
                self._exhausted = exc
                raise
            stats.requests += 1
            stats.raw_bytes += len(chunk)
            stats.gzip_bytes += len(body)
        return stats

    def check_dedup(self) -> str:
        """Check that a single-node server deduplicates; return what was found.

        Returns `ok`, `missing` (a WARNING with the fix is logged) or `unknown` where
        the URL leads to vmagent, vmauth or a cluster, whose storage cannot be asked.
        Never raises: the check must not keep the pusher from starting.
        """
        parts = urlsplit(self._url)
        if parts.path.rstrip("/") != IMPORT_SUFFIX:
            log.info(
                "cannot check deduplication behind this push URL",
                extra={"reason": "not a single-node import path"},
            )
            return "unknown"
        root = f"{parts.scheme}://{parts.netloc}"
        try:
            info, flags = (
                send(
                    self._session,
                    "GET",
                    root + path,
                    what="dedup check",
                    timeouts=self._timeouts,
                    unavailable=PushUnavailable,
                    stop=self._stop,
                    headers=self._headers(),
                )
                for path in ("/api/v1/status/buildinfo", "/flags")
            )
        except (PushUnavailable, Stopped) as exc:
            log.info("cannot check deduplication", extra={"reason": str(exc)})
            return "unknown"
        if (
            info.status_code != 200
            or flags.status_code != 200
            or _PROXY_FLAG.search(flags.text)
        ):
            log.info(
                "cannot check deduplication behind this push URL",
                extra={"reason": "not a single-node VictoriaMetrics"},
            )
            return "unknown"
        match = _DEDUP_FLAG.search(flags.text)
        if match and match.group(1) not in ("", "0", "0s", "0ms"):
            log.debug("deduplication is on", extra={"interval": match.group(1)})
            return "ok"
        log.warning(
            "VictoriaMetrics runs without -dedup.minScrapeInterval: re-pushed days are "
            "stored twice and sums over days double count; start it with "
            "-dedup.minScrapeInterval=1ms"
        )
        return "missing"
