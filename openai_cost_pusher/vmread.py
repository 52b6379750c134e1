"""Read series back from VictoriaMetrics' `/api/v1/export`, for `verify`.

Knows where a push URL's data can be read (single node, cluster, vmauth), streams the
export (one JSON object per line) and merges lines of one series, which the export may
split across data parts. It owns no comparison logic.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

from tenacity import Retrying

from openai_cost_pusher.config import IMPORT_SUFFIX, Secret
from openai_cost_pusher.errors import PushRejected, PushUnavailable
from openai_cost_pusher.model import Labels
from openai_cost_pusher.transport import HttpSession, Timeouts, iter_body, send

Series = tuple[Labels, dict[int, float]]
"""Labels (with `__name__`) and timestamp (ms) to value."""


def query_root(push_url: str) -> str:
    """Return the URL under which `/api/v1/export` reads what `push_url` stored.

    A single node or vmauth serves both under the same prefix; a cluster's
    `/insert/<tenant>/prometheus` is read at `/select/<tenant>/prometheus`.
    """
    parts = urlsplit(push_url)
    path = parts.path.rstrip("/")
    if not path.endswith(IMPORT_SUFFIX):
        msg = f"cannot tell where to read from {push_url!r}: pass --query-url"
        raise ValueError(msg)
    prefix = path[: -len(IMPORT_SUFFIX)]
    segments = prefix.split("/")
    if len(segments) >= 2 and segments[1] == "insert":
        segments[1] = "select"
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), "", ""))


def selector(name_regex: str, labels: Mapping[str, str]) -> str:
    """Return a series selector for metric names matching `name_regex` and labels."""

    def quote(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    matchers = [f"__name__=~{quote(name_regex)}"]
    matchers += [f"{k}={quote(v)}" for k, v in sorted(labels.items())]
    return "{" + ",".join(matchers) + "}"


class VmReader:
    """Reads raw samples from one VictoriaMetrics query root."""

    def __init__(
        self,
        session: HttpSession,
        root: str,
        *,
        authorization: Secret | None,
        timeouts: Timeouts,
        retrying: Callable[[], Retrying],
        stop: threading.Event,
    ) -> None:
        self._session = session
        self._root = root.rstrip("/")
        self._auth = authorization
        self._timeouts = timeouts
        self._retrying = retrying
        self._stop = stop

    def export(self, match: str, start_ms: int, end_ms: int) -> list[Series]:
        """Return every series matching `match` with its samples in the range."""
        for attempt in self._retrying():
            with attempt:
                return list(self._export_once(match, start_ms, end_ms))
        raise AssertionError("unreachable: the retry policy re-raises")

    def _export_once(self, match: str, start_ms: int, end_ms: int) -> Iterator[Series]:
        what = "read from VictoriaMetrics"
        headers = {} if self._auth is None else {"Authorization": self._auth.reveal()}
        resp = send(
            self._session,
            "POST",
            self._root + "/api/v1/export",
            what=what,
            timeouts=self._timeouts,
            unavailable=PushUnavailable,
            stop=self._stop,
            data={
                "match[]": match,
                "start": str(start_ms / 1000),
                "end": str(end_ms / 1000),
            },
            headers=headers,
            stream=True,
        )
        with resp:
            if resp.status_code == 429 or resp.status_code >= 500:
                raise PushUnavailable(f"{what}: HTTP {resp.status_code}")
            if resp.status_code != 200:
                message = " ".join(resp.text.split())[:200]
                raise PushRejected(f"{what}: HTTP {resp.status_code}: {message}")
            merged: dict[Labels, dict[int, float]] = {}
            buffer = b""
            for chunk in iter_body(resp, what=what, unavailable=PushUnavailable):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    _merge_line(line, merged, what)
            _merge_line(buffer, merged, what)
        yield from merged.items()


def _merge_line(line: bytes, merged: dict[Labels, dict[int, float]], what: str) -> None:
    if not line.strip():
        return
    try:
        row = json.loads(line)
        labels = tuple(sorted(row["metric"].items()))
        points = merged.setdefault(labels, {})
        for ts, value in zip(row["timestamps"], row["values"], strict=True):
            points[int(ts)] = float(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise PushRejected(f"{what}: unexpected export line ({exc})") from None
