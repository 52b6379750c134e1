"""The OpenAI Admin API client: endpoints, query parameters, pagination, retries.

Fetches the project list (`after` pagination), daily costs and usage (`next_page`
pagination), with the shared retry policy around every request. It is the only module
that talks to the Admin API: turning a decoded bucket or page into typed records is
`parsers`' job. This module never decides what to push. A caller that passes a
`rejected` list to `fetch_costs` or `fetch_usage` gets the buckets whose results are
malformed withheld and listed there instead; without one a malformed result fails the
fetch like any other bad answer.

Costs and usage are handed on one bucket at a time, as soon as each is parsed, so that
a page (up to 180 days of a large organization) is never held whole; a bucket's
results are decoded and parsed in batches (`jsonstream.stream_parts`), so that a
bucket is never held decoded whole either, only its records. The caller adds each
bucket's lines to its table and may land a day as soon as the answer has moved past
it (`feed.DayFeed`): the time the caller takes between two buckets counts against
neither the call's deadline (`transport.paused`) nor the retry budget of the page's
attempts. Any exception from the fetch fails the data set from the day it was
reading on. Within one fetch:
- buckets come in time order: a bucket that starts no later than the one before it
  (on the same page, or the last of the page before) is a bad answer, so that a
  caller that has seen a later bucket holds every bucket before it;
- a bucket (one start time) is handed on at most once. A page retried after a
  transient failure (a broken connection, the deadline, a 5xx) is read again from its
  start, and the buckets an earlier attempt already handed on or rejected are
  checked as usual (range, order, duplicates within the answer) but neither handed on
  again nor rejected again: the caller never counts a day twice, and each day it
  holds comes whole from one answer. A retry may also page differently: such a
  bucket is skipped on whichever page it comes again;
- a rejected bucket joins `rejected` as soon as it is read, before any later bucket
  is handed on, so that the caller withholds its day before it could land it;
- a bucket served by two pages that completed is a bad answer, never summed.

`fetch_usage_parts` hands usage on with a digest of each results batch's bytes, and
leaves unread (decoded, its envelope checked, but not parsed) each batch whose digest
the caller says it knows: the caller adds in its place what the same bytes gave it
before. A withheld bucket hands on nothing, its known batches included.

Python's cyclic garbage collector is paused while one bucket is read, decoded and
parsed, batch by batch (`_collector_paused`), and runs again before its records are
handed on. A bucket of a large organization allocates some 60,000 containers (the
decoded results, then the lines), none in a reference cycle; with the collector on,
they set off hundreds of collections per page, and the full ones walk the caller's
whole table each time.
Paused, a 30-day page of 1,000 projects takes 5 % fewer CPU cycles, of 3,000 projects
13 % fewer (cachegrind; turning the collector off for the whole run would save 7 % and
15 %, raising its first threshold to 10,000 5 % and 10 %, `gc.freeze()` after start-up
3 %). The state is restored, whatever happens, before anything else runs in this
thread.

Whatever the server sends, a fetch ends with records or one of our errors:
- pagination cannot run away: a cursor (`next_page`, or the projects' `after` id)
  seen before in the same query, a cursor longer than 4,096 characters, or more
  pages than the query can need (one per bucket plus `PAGE_MARGIN`; for projects
  `MAX_PAGES`) stops the fetch with `BadResponse`;
- a project list page is read whole up to `MAX_DOCUMENT_BYTES` (16 MiB) and the whole
  list up to `MAX_PROJECT_LIST_BYTES`; costs and usage pages stream, one bucket at a
  time and its results in batches, within `jsonstream`'s limits on one value (one
  result, not the bucket) and on nesting;
- any failure while decoding or parsing an answer that is not one of ours (a
  `RecursionError`, a `MemoryError`, a bug) becomes `BadResponse`, so a hostile answer
  fails the data set, never the process.
"""

from __future__ import annotations

import gc
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Container, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from tenacity import Retrying

from openai_cost_pusher.config import Secret
from openai_cost_pusher.errors import (
    AuthRejected,
    BadResponse,
    CostPusherError,
    RequestRejected,
    Transient,
)
from openai_cost_pusher.jsonstream import (
    Items,
    LimitExceeded,
    Member,
    NotAnObject,
    Part,
    StreamError,
    Whole,
    loads,
    stream_parts,
)
from openai_cost_pusher.model import (
    ApiKey,
    CostLine,
    CostParts,
    Project,
    Rejected,
    UsageLine,
    UsageParts,
)
from openai_cost_pusher.parsers import (
    DAY,
    BadResult,
    BucketReader,
    CostBucket,
    UsageBucket,
    check_cursor,
    parse_api_keys_page,
    parse_page,
    parse_projects_page,
)
from openai_cost_pusher.parsers import USAGE_KINDS as USAGE_KINDS  # re-exported
from openai_cost_pusher.spend_limits import (
    SpendAlert,
    SpendLimit,
    Unread,
    parse_spend_alerts_page,
    parse_spend_limit,
)
from openai_cost_pusher.transport import (
    HttpSession,
    Timeouts,
    display_url,
    iter_body,
    parse_retry_after,
    paused,
    read_body,
    redirect_target,
    send,
)

log = logging.getLogger(__name__)

COSTS_PATH = "/organization/costs"
PROJECTS_PATH = "/organization/projects"
USAGE_PATH = "/organization/usage"
COSTS_MAX_LIMIT = 180
SHARED_MAX = 1 << 18
"""Strings (ids, line items, models) and tuples (usage dimensions and fields) the
parsers share, kept from fetch to fetch up to this many each (some 30 MiB at most)."""
COSTS_GROUP_BY = ("project_id", "line_item")
COSTS_BY_KEY_GROUP_BY = ("project_id", "api_key_id")
KEY_COSTS_FROM = 1_764_979_200
"""2025-12-06 00:00 UTC: the Admin API refuses to group costs by API key before it."""
API_KEYS_LIMIT = 100
USAGE_WIDTHS = {"1d": (DAY, 31), "1h": (3600, 168), "1m": (60, 1440)}
"""Bucket width to (seconds, the API's largest `limit`)."""
PROJECTS_LIMIT = 100
MAX_PAGES = 10_000
"""The most project list pages followed (a million projects)."""
PAGE_MARGIN = 3
"""Pages a bucket query may take beyond one per bucket (a bucket is never split)."""
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""The largest project list page read (100 projects take a few KiB)."""
MAX_PROJECT_LIST_BYTES = 64 * 1024 * 1024
"""The most project list text read in one fetch (some 200,000 projects)."""
SPEND_ALERTS_LIMIT = 100
"""The largest `limit` of the spend alert lists."""
MAX_SPEND_ALERT_PAGES = 100
"""The most spend alert pages followed for one list (10,000 alerts)."""

T = TypeVar("T")
L = TypeVar("L", Project, ApiKey)
"""An item of a list endpoint read with `after` (projects, a project's API keys)."""
BucketParser = Callable[[str], BucketReader[T]]
"""Returns the reader of one bucket, given the bucket's `where`."""
Handed = tuple[int, list[T], list[tuple[bytes, int]]]
"""A bucket handed on: its start, its records, and the digests of its results
batches in order, each with how many records it gave (`BucketReader.batches`)."""
Json = dict[str, Any]
RequestCounter = Callable[[str, str], None]


def usage_group_by(kind: str, *, by_user: bool, by_api_key: bool) -> list[str]:
    """Return the `group_by` values for one usage endpoint under the settings."""
    spec = USAGE_KINDS[kind]
    extra = [
        d
        for d, on in (("user_id", by_user), ("api_key_id", by_api_key))
        if on and d in spec.dims
    ]
    return [*spec.group_by, *extra]


def decode_json(content: bytes, where: str) -> Any:
    """Decode a JSON body strictly (no NaN or Infinity), naming the endpoint."""
    try:
        return loads(content)
    except LimitExceeded as exc:
        raise BadResponse(f"{where}: the answer is refused: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadResponse(f"{where}: the answer is not valid JSON ({exc})") from None


def _error_message(content: bytes) -> str:
    """Return the `error.message` of an ErrorResponse, trimmed, or ``""``.

    Best effort on a body of at most 64 KiB: anything unexpected gives ``""``.
    """
    try:
        message = loads(content)["error"]["message"]
        return " ".join(str(message).split())[:200]
    except Exception:  # only a bonus for the message: never fail on it
        return ""


def _unexpected(where: str, exc: Exception) -> BadResponse:
    """Return the BadResponse for a failure inside decoding that is not one of ours."""
    log.debug("%s: failed to decode the answer", where, exc_info=exc)
    return BadResponse(
        f"{where}: the answer cannot be read ({type(exc).__name__}); it is not the "
        "documented shape"
    )


# -- the client ---------------------------------------------------------------------


class AdminApi:
    """Fetches answers from the Admin API, page by page, with retries."""

    def __init__(
        self,
        session: HttpSession,
        base_url: str,
        key: Secret,
        *,
        timeouts: Timeouts,
        retrying: Callable[[], Retrying],
        stop: threading.Event,
        count_request: RequestCounter = lambda endpoint, code: None,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._key = key
        self._timeouts = timeouts
        self._retrying = retrying
        self._stop = stop
        self._count = count_request
        self._strings: dict[str, str] = {}
        self._tuples: dict[Any, Any] = {}

    def _send(
        self, path: str, params: list[tuple[str, str]], *, stream: bool = False
    ) -> requests.Response:
        """Send one GET; return a 200 response or raise by status."""
        where = f"GET {path}"
        endpoint = path.rsplit("/", 1)[-1]
        url = self._base_url + path
        try:
            resp = send(
                self._session,
                "GET",
                url,
                what=where,
                timeouts=self._timeouts,
                unavailable=Transient,
                stop=self._stop,
                params=params,
                stream=stream,
                headers={
                    "Authorization": f"Bearer {self._key.reveal()}",
                    "Accept": "application/json",
                },
            )
        except Transient:
            self._count(endpoint, "error")
            raise
        self._count(endpoint, str(resp.status_code))
        if resp.status_code == 200:
            return resp
        with resp:
            raise _status_error(resp, where, url)

    def _get(self, path: str, params: list[tuple[str, str]]) -> tuple[Any, int]:
        """Return one page decoded whole, and its size in bytes."""
        where = f"GET {path}"
        for attempt in self._retrying():
            with attempt, self._send(path, params, stream=True) as resp:
                content, whole = read_body(
                    resp, limit=MAX_DOCUMENT_BYTES, what=where, unavailable=Transient
                )
                if not whole:
                    raise BadResponse(
                        f"{where}: the answer is larger than "
                        f"{MAX_DOCUMENT_BYTES >> 20} MiB; refused"
                    )
                try:
                    return decode_json(content, where), len(content)
                except CostPusherError:
                    raise
                except Exception as exc:  # the decoding boundary: see the module
                    raise _unexpected(where, exc) from None
        raise AssertionError("unreachable: the retry policy re-raises")

    def fetch_projects(self) -> list[Project]:
        """Return every project, archived ones included."""
        return self._list_all(
            PROJECTS_PATH,
            f"GET {PROJECTS_PATH}",
            [("include_archived", "true"), ("limit", str(PROJECTS_LIMIT))],
            parse_projects_page,
            "project list",
        )

    def fetch_api_keys(self, project_id: str) -> list[ApiKey]:
        """Return every API key of one project (ids and names), following `after`."""
        return self._list_all(
            f"{PROJECTS_PATH}/{quote(project_id, safe='')}/api_keys",
            f"GET {PROJECTS_PATH}/{{project_id}}/api_keys",
            [("limit", str(API_KEYS_LIMIT))],
            parse_api_keys_page,
            "key list",
        )

    def _list_all(
        self,
        path: str,
        where: str,
        base: list[tuple[str, str]],
        parse: Callable[[Any, str], tuple[list[L], bool]],
        what: str,
    ) -> list[L]:
        """Return every item of a list endpoint, following `after` page by page,
        bounded in pages and in bytes."""
        items: list[L] = []
        after: str | None = None
        seen: set[str] = set()
        total = 0
        for _ in range(MAX_PAGES):
            params = base if after is None else [*base, ("after", after)]
            body, size = self._get(path, params)
            total += size
            if total > MAX_PROJECT_LIST_BYTES:
                raise BadResponse(
                    f"{where}: the {what} is larger than "
                    f"{MAX_PROJECT_LIST_BYTES >> 20} MiB; stopped"
                )
            try:
                page, has_more = parse(body, where)
            except CostPusherError:
                raise
            except Exception as exc:  # the decoding boundary: see the module
                raise _unexpected(where, exc) from None
            items.extend(page)
            if not has_more:
                return items
            after = _next_after(body, page, after, seen, where)
        raise BadResponse(
            f"{where}: more than {MAX_PAGES} pages; the API keeps paginating, stopped"
        )

    def fetch_costs(
        self,
        start: int,
        end: int,
        rejected: list[Rejected] | None = None,
        group_by: Sequence[str] = COSTS_GROUP_BY,
    ) -> Iterator[list[CostLine]]:
        """Yield the cost lines of every day in `[start, end)`, one day at a time,
        grouped by `group_by` (`COSTS_BY_KEY_GROUP_BY`: per project and API key).

        Each day's lines are yielded as soon as its bucket is parsed, at most once
        per fetch (see the module notes); days without costs yield nothing. With
        `rejected` a list, a day with a malformed result is withheld whole (none of
        its lines is yielded) and a `Rejected` naming it is appended to the list as
        it is read; a bad page or bucket envelope still raises. With
        `rejected` None, a malformed result raises `BadResponse` too.
        """
        for handed in self._costs(group_by, start, end, _Fetch(rejected)):
            records = [handed[1]]
            del handed
            yield records.pop()  # not held here while the caller takes it

    def fetch_cost_parts(
        self,
        start: int,
        end: int,
        rejected: list[Rejected] | None,
        known: Container[bytes],
        group_by: Sequence[str] = COSTS_GROUP_BY,
    ) -> Iterator[CostParts]:
        """Yield the days of `[start, end)` as `fetch_costs` does, each as
        `CostParts`, with its batches' digests as `fetch_usage_parts` gives them:
        a batch whose digest `known` holds is not parsed."""
        fetch = _Fetch(rejected, digests=True, known=known)
        for handed in self._costs(group_by, start, end, fetch):
            parts = [CostParts(handed[0], handed[1], tuple(handed[2]))]
            del handed
            yield parts.pop()  # not held here while the caller takes it

    def _costs(
        self, group_by: Sequence[str], start: int, end: int, fetch: _Fetch
    ) -> Iterator[Handed[CostLine]]:
        self._bound_shared()
        params = [("bucket_width", "1d")]
        params += [("group_by[]", dim) for dim in group_by]
        yield from self._buckets(
            COSTS_PATH,
            params,
            start,
            end,
            DAY,
            COSTS_MAX_LIMIT,
            lambda where: CostBucket(where, self._strings),
            fetch,
        )

    def _bound_shared(self) -> None:
        """Empty the strings and tuples the parsers share once either holds
        `SHARED_MAX` entries: they are kept from fetch to fetch, and would grow with
        every project, key and model an organization ever had."""
        if len(self._strings) >= SHARED_MAX:
            self._strings.clear()
        if len(self._tuples) >= SHARED_MAX:
            self._tuples.clear()

    def fetch_usage(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        rejected: list[Rejected] | None = None,
    ) -> Iterator[list[UsageLine]]:
        """Yield the usage lines of one endpoint for `[start, end)`, bucket by bucket.

        `rejected` works as for `fetch_costs`, one bucket of `width` at a time.
        """
        for handed in self._usage(kind, start, end, width, group_by, _Fetch(rejected)):
            records = [handed[1]]
            del handed
            yield records.pop()  # not held here while the caller takes it

    def fetch_usage_parts(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        rejected: list[Rejected] | None,
        known: Container[bytes],
    ) -> Iterator[UsageParts]:
        """Yield the buckets of one endpoint as `fetch_usage` does, each as
        `UsageParts`: its lines, and a digest of each results batch's bytes with how
        many lines it gave, in order; a batch whose digest `known` holds is not
        parsed (the same bytes gave the caller its lines before). A bucket whose
        batches were all known has no lines, and is still handed on.
        """
        fetch = _Fetch(rejected, digests=True, known=known)
        for handed in self._usage(kind, start, end, width, group_by, fetch):
            parts = [UsageParts(handed[0], handed[1], tuple(handed[2]))]
            del handed
            yield parts.pop()  # not held here while the caller takes it

    def _usage(
        self,
        kind: str,
        start: int,
        end: int,
        width: str,
        group_by: Sequence[str],
        fetch: _Fetch,
    ) -> Iterator[Handed[UsageLine]]:
        self._bound_shared()
        step, max_limit = USAGE_WIDTHS[width]
        params = [("bucket_width", width)]
        params += [("group_by[]", dim) for dim in group_by]
        yield from self._buckets(
            f"{USAGE_PATH}/{kind}",
            params,
            start,
            end,
            step,
            max_limit,
            lambda where: UsageBucket(where, kind, step, self._tuples),
            fetch,
        )

    def _buckets(
        self,
        path: str,
        params: list[tuple[str, str]],
        start: int,
        end: int,
        step: int,
        max_limit: int,
        parse: BucketParser[T],
        fetch: _Fetch,
    ) -> Iterator[Handed[T]]:
        """Yield the records of every bucket in `[start, end)`, one bucket at a time.

        One query for the whole range, asking for `max_limit` buckets a page (the
        API's largest `limit` for the width: `limit` counts buckets per page, not in
        all) and following `next_page` with the query's exact parameters, so that the
        range takes as few pages as the API serves; `end_time` is left to the API
        (now). Each page is decoded
        as a stream, and each bucket's records are handed over as soon as it is
        parsed, at most once (see the module notes). A bucket served twice or
        outside the query's range is a bad answer, never summed. A bucket withheld
        for a malformed result (`rejected` given) still counts as served.
        """
        if start >= end:
            return
        base = [("start_time", str(start)), *params, ("limit", str(max_limit))]
        query = _Query(path, base, start, end, step)
        yield from self._query(query, parse, fetch)

    def _query(
        self, query: _Query, parse: BucketParser[T], fetch: _Fetch
    ) -> Iterator[Handed[T]]:
        """Yield the records of one query's buckets, following `next_page`.

        A page holds at least one whole bucket, so a query needs at most one page per
        bucket; `PAGE_MARGIN` more allows for buckets past the end that the API's
        clock already has. Beyond that, or on a cursor seen before, the API is
        paginating in a loop.
        """
        where = f"GET {query.path}"
        buckets = -(-(query.end - query.start) // query.step)
        max_pages = buckets + PAGE_MARGIN
        cursors: set[str] = set()
        page_token: str | None = None
        for _ in range(max_pages):
            params = query.params
            if page_token is not None:
                params = [*params, ("page", page_token)]
            page = yield from self._page(query, params, parse, fetch)
            if not page.has_more:
                return
            page_token = page.next_page
            assert page_token is not None  # parse_page guarantees it
            if page_token in cursors:
                raise BadResponse(
                    f"{where}.next_page: the cursor repeats after {len(cursors) + 1} "
                    "pages; the API is paginating in a loop, stopped"
                )
            cursors.add(page_token)
        raise BadResponse(
            f"{where}: more than {max_pages} pages for {buckets} buckets "
            f"({query.start}..{query.end}); the API keeps paginating, stopped"
        )

    def _page(
        self,
        query: _Query,
        params: list[tuple[str, str]],
        parse: BucketParser[T],
        fetch: _Fetch,
    ) -> Generator[Handed[T], None, _Page]:
        """Fetch one page, yielding each bucket's records as it is parsed, retrying
        transient failures; return the page once it is whole and recorded in `fetch`.
        The time the caller holds a bucket counts against neither the call's
        deadline nor the retry budget.

        The attempt is reported to the retry policy by hand rather than with `with
        attempt:`, which would also swallow the `GeneratorExit` of a caller that stops
        early; only this page's own failures are reported (nothing else is thrown into
        a generator).
        """
        for attempt in self._retrying():
            page = _Page(fetch.last)
            try:
                with self._send(query.path, params, stream=True) as resp:
                    for handed in _decode_page(resp, query, parse, fetch, page):
                        began = time.monotonic()
                        box = [handed]
                        del handed
                        with paused(resp):
                            yield box.pop()  # the caller's alone while it holds it
                        # the caller's time (a day landing) is not the page's:
                        # it counts against neither its deadline nor the retry
                        # budget of its attempts
                        attempt.retry_state.start_time += time.monotonic() - began
            except Exception as exc:  # the policy retries it, or re-raises it
                attempt.retry_state.set_exception((type(exc), exc, exc.__traceback__))
                continue
            attempt.retry_state.set_result(None)
            fetch.commit(page)
            return page
        raise AssertionError("unreachable: the retry policy re-raises")

    # -- spend limits and spend alerts (optional reads: see `spend_limits`) ----------

    def fetch_spend_limit(self, project_id: str = "") -> SpendLimit | Unread:
        """Return the organization's (`project_id` ``""``) or a project's hard
        monthly spend limit, `Unread.NOT_CONFIGURED` for none (HTTP 404 included),
        or `Unread.REFUSED` for HTTP 403 (the key lacks the scope).

        Retried like every read; any other failure raises.
        """
        path = _spend_path(project_id, "spend_limit")
        where = f"GET {path}"
        body = self._get_optional(path, [])
        if isinstance(body, Unread):
            return body
        try:
            return parse_spend_limit(body, where, project_id)
        except CostPusherError:
            raise
        except Exception as exc:  # the decoding boundary: see the module
            raise _unexpected(where, exc) from None

    def fetch_spend_alerts(self, project_id: str = "") -> list[SpendAlert] | Unread:
        """Return every spend alert of the organization (`project_id` ``""``) or of
        a project, all pages; `Unread` as for `fetch_spend_limit`.

        Pages of `SPEND_ALERTS_LIMIT` continue with `after=<last_id>`, at most
        `MAX_SPEND_ALERT_PAGES` of them; a repeated cursor stops the read.
        """
        path = _spend_path(project_id, "spend_alerts")
        where = f"GET {path}"
        alerts: list[SpendAlert] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_SPEND_ALERT_PAGES):
            params = [("limit", str(SPEND_ALERTS_LIMIT))]
            if after is not None:
                params.append(("after", after))
            body = self._get_optional(path, params)
            if isinstance(body, Unread):
                if after is None:
                    return body
                raise BadResponse(
                    f"{where}: a later page is answered as {body.value}; stopped"
                )
            try:
                page, has_more, last_id = parse_spend_alerts_page(
                    body, where, project_id
                )
            except CostPusherError:
                raise
            except Exception as exc:  # the decoding boundary: see the module
                raise _unexpected(where, exc) from None
            alerts.extend(page)
            if not has_more:
                return alerts
            if not page:
                raise BadResponse(f"{where}: has_more on an empty page")
            cursor = last_id or page[-1].alert_id
            if cursor in seen:
                raise BadResponse(
                    f"{where}.last_id: repeats {cursor!r:.60} after {len(seen) + 1} "
                    "pages; the API is paginating in a loop, stopped"
                )
            seen.add(cursor)
            after = cursor
        raise BadResponse(
            f"{where}: more than {MAX_SPEND_ALERT_PAGES} pages; the API keeps "
            "paginating, stopped"
        )

    def _get_optional(self, path: str, params: list[tuple[str, str]]) -> Any:
        """Return `_get`'s decoded answer, or `Unread` for an answer that means "not
        configured" (404) or "not allowed for this key" (403)."""
        try:
            body, _ = self._get(path, params)
        except (AuthRejected, RequestRejected) as exc:
            status = _status_of(exc)
            if status == 403:
                return Unread.REFUSED
            if status == 404:
                return Unread.NOT_CONFIGURED
            raise
        return body


@dataclass(frozen=True, slots=True)
class _Query:
    """One bucket query: path, parameters (without `page`) and the range it covers."""

    path: str
    params: list[tuple[str, str]]
    start: int
    end: int
    step: int


@dataclass(slots=True)
class _Page:
    """One attempt at a page: the bucket starts it served, the last of them (or the
    last of the pages before), and once it is whole its `has_more` and
    `next_page`."""

    last: int
    starts: set[int] = field(default_factory=set)
    has_more: bool = False
    next_page: str | None = None


@dataclass(slots=True)
class _Fetch:
    """What one fetch has served and handed on, over its queries and pages."""

    rejected: list[Rejected] | None
    """Where rejected buckets go as they are read; None: a malformed result fails
    the fetch."""
    digests: bool = False
    """Whether each results batch is digested (see `BucketReader`)."""
    known: Container[bytes] = ()
    """Digests of results batches not to parse (see `BucketReader`)."""
    seen: set[int] = field(default_factory=set)
    """Bucket starts served by the pages that completed."""
    handed: set[int] = field(default_factory=set)
    """Bucket starts whose records were yielded or rejected, by any attempt."""
    last: int = -1
    """The start of the last bucket of the pages that completed."""

    def commit(self, page: _Page) -> None:
        """Record a whole page: its buckets are served."""
        self.seen |= page.starts
        self.last = page.last


def _decode_page(
    resp: requests.Response,
    query: _Query,
    parse: BucketParser[T],
    fetch: _Fetch,
    page: _Page,
) -> Iterator[Handed[T]]:
    """Decode a streamed page bucket by bucket, each bucket's results batch by batch
    into a reader from `parse`, checking each bucket's start and yielding its records
    (once the bucket is whole) unless `fetch` has handed them on already; fill `page`.

    With `fetch.rejected` a list, a bucket with a malformed result (`BadResult`) is
    checked like any other, then withheld and listed in the page's `rejected`;
    otherwise it fails the page. Raises `BadResponse` for a bad answer, whatever
    was yielded before.
    """
    where = f"GET {query.path}"
    envelope: dict[str, Any] = {}
    rejecting = fetch.rejected is not None
    body = iter_body(resp, what=where, unavailable=Transient)

    def keep(key: str, value: Any) -> None:
        if key in _ENVELOPE_KEYS:  # other keys are dropped: they could be many
            envelope[key] = value

    parts = stream_parts(body, "data", "results", keep, digests=fetch.digests)
    try:
        for i in itertools.count():
            at = f"data[{i}]"
            bad: BadResult | None = None
            with _collector_paused():
                reader = parse(f"{where}: {at}")
                reader.known = fetch.known
                if not _read_bucket(parts, reader):
                    break
                try:
                    start, records = reader.finish()
                except BadResult as exc:
                    if not rejecting:
                        raise
                    start, records, bad = exc.start, [], exc
                batches = reader.batches
                del reader  # not held while the caller takes the records
            if start >= query.end:
                continue  # the API's clock is already past our window's end
            if not query.start <= start < query.end:
                raise BadResponse(
                    f"{where}: data[{i}].start_time: {start} is outside the "
                    f"requested {query.start}..{query.end}"
                )
            if start in fetch.seen or start in page.starts:
                raise BadResponse(f"{where}: data[{i}]: bucket {start} served twice")
            if start < page.last:
                raise BadResponse(
                    f"{where}: data[{i}].start_time: {start} comes after bucket "
                    f"{page.last}: the buckets are not in time order"
                )
            page.starts.add(start)
            page.last = start
            if start in fetch.handed:
                continue  # handed on by an earlier, failed attempt: never twice
            if bad is not None:
                fetch.handed.add(start)  # rejected once, whatever a retry sends
                if fetch.rejected is not None:
                    path = f"{at}.{bad.path}"
                    fetch.rejected.append(Rejected(start, query.path, path, bad.reason))
            elif records or batches:
                fetch.handed.add(start)
                handed = [(start, records, batches)]
                del records, batches
                # a bucket's lines are the caller's alone while it holds them: a
                # suspended generator's variables would keep them alive (a large
                # organization's day of usage lines is tens of MiB)
                yield handed.pop()
    except NotAnObject:
        raise BadResponse(f"{where}: expected an object") from None
    except LimitExceeded as exc:
        raise BadResponse(f"{where}: the answer is refused: {exc}") from None
    except StreamError as exc:
        raise BadResponse(f"{where}: the answer is not valid JSON ({exc})") from None
    except CostPusherError:
        raise
    except Exception as exc:  # the decoding boundary: see the module
        raise _unexpected(where, exc) from None
    _, page.has_more, page.next_page = parse_page(envelope, where)


_ENVELOPE_KEYS = frozenset({"object", "data", "has_more", "next_page"})


def _read_bucket(parts: Iterator[Part], reader: BucketReader[T]) -> bool:
    """Hand the parts of the page's next bucket to `reader` as they are decoded, its
    results batch by batch; return False when the page has no more buckets."""
    for part in parts:
        if isinstance(part, Items):
            reader.results(part.values, part.first, part.digest)
        elif isinstance(part, Member):
            reader.member(part.key, part.value)
        elif isinstance(part, Whole):
            reader.whole(part.value)
            return True
        else:  # the bucket's end
            return True
        del part  # a batch is not held while the next one is decoded
    return False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, if it runs (see the module
    notes); it runs again after the block, whatever happens in it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _status_error(resp: requests.Response, where: str, url: str) -> Exception:
    """Return the error for a non-200 answer; its body is at most 64 KiB here."""
    status = resp.status_code
    shown = display_url(url)
    if status == 401:
        return AuthRejected(
            f"{where}: admin key rejected (HTTP 401) by {shown}; check "
            "OPENAI_ADMIN_KEY: it must be an admin key (sk-admin-...) of this "
            "organization, not revoked"
        )
    if status == 403:
        return AuthRejected(
            f"{where}: admin key rejected (HTTP 403) by {shown}; the key lacks "
            "access: use an admin key of an organization owner"
        )
    if 300 <= status < 400:
        return RequestRejected(
            f"{where}: HTTP {status} redirect to {redirect_target(resp)}, not "
            "followed (the admin key goes to no other host); set OPENAI_BASE_URL to "
            "the API root that answers directly"
        )
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(resp.headers)
        return Transient(f"{where}: HTTP {status}", retry_after=retry_after)
    message = _error_message(resp.content)
    suffix = f": {message}" if message else ""
    return RequestRejected(f"{where}: HTTP {status}{suffix}")


def _next_after(
    body: Mapping[str, Any],
    page: Sequence[Project | ApiKey],
    after: str | None,
    seen: set[str],
    where: str,
) -> str:
    """Return the `after` id of the next project page, refusing a loop."""
    if not page:
        raise BadResponse(f"{where}: has_more on an empty page")
    last_id = body.get("last_id") or page[-1].id
    if not isinstance(last_id, str):
        raise BadResponse(f"{where}.last_id: expected a project id")
    check_cursor(last_id, f"{where}.last_id")
    if last_id == after or last_id in seen:
        raise BadResponse(
            f"{where}.last_id: repeats {last_id!r:.60} after {len(seen) + 1} pages; "
            "the API is paginating in a loop, stopped"
        )
    seen.add(last_id)
    return last_id


def _spend_path(project_id: str, leaf: str) -> str:
    """Return the path of a spend read: the organization's or a project's."""
    if not project_id:
        return f"/organization/{leaf}"
    return f"{PROJECTS_PATH}/{quote(project_id, safe='')}/{leaf}"


_STATUS = re.compile(r"^: (?:admin key rejected \()?HTTP (\d{3})\b")


def _status_of(exc: Exception) -> int | None:
    """Return the HTTP status `_status_error` put in `exc`'s message, or None.

    The message starts with `GET <path>: `; a path built by `_spend_path` holds no
    `: ` (the project id is percent-encoded), so the status is read after it."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    match = _STATUS.match(sep + rest) if head.startswith("GET ") else None
    return int(match.group(1)) if match else None
