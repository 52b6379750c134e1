"""Read series back from VictoriaMetrics' `/api/v1/export`, for `verify`.

Knows where a push URL's data can be read (single node, cluster, vmauth), streams the
export (one JSON object per line) and merges lines of one series, which the export may
split across data parts; and asks `/api/v1/series` whether any series matches at all
(the demo's check for real data). For `verify --repair` it also reads `/flags` and
deletes series (`delete_series`). It owns no comparison logic.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import requests
from tenacity import Retrying

from openai_cost_pusher.config import IMPORT_SUFFIX, Secret
from openai_cost_pusher.errors import PushRejected, PushUnavailable
from openai_cost_pusher.model import Labels
from openai_cost_pusher.transport import HttpSession, Timeouts, iter_body, send

MAX_EXPORT_LINE_BYTES = 64 << 20
"""One series of one export line: far more than a series of the window holds."""

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

    def close(self) -> None:
        """Close the reader's connections."""
        self._session.close()

    def export(self, match: str, start_ms: int, end_ms: int) -> list[Series]:
        """Return every series matching `match` with its samples in the range."""
        for attempt in self._retrying():
            with attempt:
                return list(self._export_once(match, start_ms, end_ms))
        raise AssertionError("unreachable: the retry policy re-raises")

    def has_series(self, match: str, start_ms: int, end_ms: int) -> bool:
        """Return whether any series matching `match` has samples in the range.

        Asks `/api/v1/series` for one series at most (`limit=1`), so the answer stays
        small whatever the server holds; VictoriaMetrics widens the range to whole UTC
        days. Raises `PushUnavailable` when nothing answers (after the retry policy)
        and `PushRejected` when the server refuses or cannot answer the question.
        """
        return bool(self.series(match, start_ms, end_ms, limit=1))

    def series(
        self, match: str, start_ms: int, end_ms: int, *, limit: int = 50_000
    ) -> list[dict[str, str]]:
        """Return the label sets (with `__name__`) of at most `limit` series matching
        `match` with samples in the range, from `/api/v1/series`; raises as
        `has_series` does."""
        for attempt in self._retrying():
            with attempt:
                return self._series_once(match, start_ms, end_ms, limit)
        raise AssertionError("unreachable: the retry policy re-raises")

    def totals(self, match: str, start_ms: int, end_ms: int) -> tuple[int, float]:
        """Return how many samples the series matching `match` hold in
        `[start_ms, end_ms)`, and their sum: two small instant queries, whatever the
        number of series. Raises as `export` does."""
        span = f"{max(1, end_ms - start_ms)}ms"
        at = str((end_ms - 1) / 1000)
        out: list[float] = []
        for func in ("count_over_time", "sum_over_time"):
            query = f"sum({func}({match}[{span}]))"
            for attempt in self._retrying():
                with attempt:
                    out.append(self._scalar_once(query, at))
                    break
        return int(out[0]), out[1]

    def _scalar_once(self, query: str, at: str) -> float:
        what = "read totals from VictoriaMetrics"
        with self._post("/api/v1/query", what, {"query": query, "time": at}) as resp:
            try:
                result = resp.json()["data"]["result"]
                return float(result[0]["value"][1]) if result else 0.0
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise PushRejected(f"{what}: unexpected answer ({exc})") from None

    @property
    def root(self) -> str:
        """Return the query root this reader reads from (without a trailing `/`)."""
        return self._root

    def flags(self) -> str | None:
        """Return the text of `/flags` at the root of the query URL's host.

        VictoriaMetrics lists there only the flags set explicitly. None where the
        server answers anything but 200 (a proxy that does not route the path).
        Raises `PushUnavailable` when nothing answers (after the retry policy).
        """
        parts = urlsplit(self._root)
        url = urlunsplit((parts.scheme, parts.netloc, "/flags", "", ""))
        what = "read /flags of VictoriaMetrics"
        for attempt in self._retrying():
            with attempt:
                resp = send(
                    self._session,
                    "GET",
                    url,
                    what=what,
                    timeouts=self._timeouts,
                    unavailable=PushUnavailable,
                    stop=self._stop,
                    headers=self._headers(),
                )
                with resp:
                    if resp.status_code == 429 or resp.status_code >= 500:
                        raise PushUnavailable(f"{what}: HTTP {resp.status_code}")
                    return resp.text if resp.status_code == 200 else None
        raise AssertionError("unreachable: the retry policy re-raises")

    def delete_series(self, matches: Sequence[str]) -> None:
        """Delete every series matching any of `matches`, with its whole history.

        POSTs `/api/v1/admin/tsdb/delete_series` under the query root; a cluster's
        `/select/<tenant>/prometheus` deletes at `/delete/<tenant>/prometheus`.
        VictoriaMetrics 1.112 refuses a time range there: a matching series loses
        every sample. Raises `PushUnavailable` when nothing answers (after the retry
        policy) and `PushRejected` when the server refuses.
        """
        if not matches:
            return
        parts = urlsplit(self._root)
        segments = parts.path.split("/")
        if len(segments) >= 2 and segments[1] == "select":
            segments[1] = "delete"
        path = "/".join(segments) + "/api/v1/admin/tsdb/delete_series"
        url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        what = "delete series in VictoriaMetrics"
        for attempt in self._retrying():
            with attempt:
                resp = send(
                    self._session,
                    "POST",
                    url,
                    what=what,
                    timeouts=self._timeouts,
                    unavailable=PushUnavailable,
                    stop=self._stop,
                    data=[("match[]", match) for match in matches],
                    headers=self._headers(),
                )
                with resp:
                    status = resp.status_code
                    if status == 429 or status >= 500:
                        raise PushUnavailable(f"{what}: HTTP {status}")
                    if status in (401, 403):
                        raise PushRejected(
                            f"{what}: HTTP {status}: credentials rejected (a server "
                            "run with -deleteAuthKey wants that key; vmauth must "
                            "allow the path)"
                        )
                    if not 200 <= status < 300:
                        message = " ".join(resp.text.split())[:200]
                        raise PushRejected(f"{what}: HTTP {status}: {message}")
                    return
        raise AssertionError("unreachable: the retry policy re-raises")

    def _headers(self) -> dict[str, str]:
        return {} if self._auth is None else {"Authorization": self._auth.reveal()}

    def _post(
        self, path: str, what: str, data: dict[str, str], *, stream: bool = False
    ) -> requests.Response:
        """POST a form under the query root; raise `PushUnavailable` for 429 and 5xx
        and `PushRejected` for any other answer but 200."""
        resp = send(
            self._session,
            "POST",
            self._root + path,
            what=what,
            timeouts=self._timeouts,
            unavailable=PushUnavailable,
            stop=self._stop,
            data=data,
            headers=self._headers(),
            stream=stream,
        )
        if resp.status_code == 429 or resp.status_code >= 500:
            resp.close()
            raise PushUnavailable(f"{what}: HTTP {resp.status_code}")
        if resp.status_code != 200:
            message = " ".join(resp.text.split())[:200]
            resp.close()
            raise PushRejected(f"{what}: HTTP {resp.status_code}: {message}")
        return resp

    @staticmethod
    def _range(match: str, start_ms: int, end_ms: int) -> dict[str, str]:
        return {
            "match[]": match,
            "start": str(start_ms / 1000),
            "end": str(end_ms / 1000),
        }

    def _series_once(
        self, match: str, start_ms: int, end_ms: int, limit: int
    ) -> list[dict[str, str]]:
        what = "series lookup in VictoriaMetrics"
        data = {**self._range(match, start_ms, end_ms), "limit": str(limit)}
        with self._post("/api/v1/series", what, data) as resp:
            try:
                found = resp.json()["data"]
            except (ValueError, KeyError, TypeError) as exc:
                raise PushRejected(f"{what}: unexpected answer ({exc})") from None
        if not isinstance(found, list) or not all(
            isinstance(labels, dict)
            and all(isinstance(v, str) for v in labels.values())
            for labels in found
        ):
            raise PushRejected(f"{what}: unexpected answer (not a list of label sets)")
        return found

    def _export_once(self, match: str, start_ms: int, end_ms: int) -> Iterator[Series]:
        what = "read from VictoriaMetrics"
        data = self._range(match, start_ms, end_ms)
        with self._post("/api/v1/export", what, data, stream=True) as resp:
            merged: dict[Labels, dict[int, float]] = {}
            buffer = b""
            for chunk in iter_body(resp, what=what, unavailable=PushUnavailable):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    _merge_line(line, merged, what)
                if len(buffer) > MAX_EXPORT_LINE_BYTES:
                    raise PushRejected(
                        f"{what}: one export line is longer than "
                        f"{MAX_EXPORT_LINE_BYTES >> 20} MiB"
                    )
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
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise PushRejected(f"{what}: unexpected export line ({exc})") from None
