"""The OpenAI Admin API client: endpoints, pagination and page parsers.

Fetches the project list (`after` pagination) and daily costs (`next_page`
pagination), with the shared retry policy around every request. The parsers are pure
functions that turn a decoded page into typed records and name the endpoint and field
of anything that does not have the documented shape. This module never decides what to
push: it returns whole answers or raises.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import requests
from tenacity import Retrying

from openai_cost_pusher.config import Secret
from openai_cost_pusher.errors import (
    AuthRejected,
    BadResponse,
    RequestRejected,
    Transient,
)
from openai_cost_pusher.jsonstream import NotAnObject, StreamError, loads, stream_object
from openai_cost_pusher.model import CostLine, Project, UsageLine
from openai_cost_pusher.transport import (
    HttpSession,
    Timeouts,
    iter_body,
    parse_retry_after,
    send,
)

log = logging.getLogger(__name__)

DAY = 86_400
COSTS_PATH = "/organization/costs"
PROJECTS_PATH = "/organization/projects"
USAGE_PATH = "/organization/usage"
COSTS_MAX_LIMIT = 180
USAGE_WIDTHS = {"1d": (DAY, 31), "1h": (3600, 168), "1m": (60, 1440)}
"""Bucket width to (seconds, the API's largest `limit`)."""
PROJECTS_LIMIT = 100
MAX_PAGES = 10_000

_DECIMAL = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$")

T = TypeVar("T")
BucketParser = Callable[[Any, str], tuple[int, list[T]]]
Json = dict[str, Any]
RequestCounter = Callable[[str, str], None]


# -- pure parsers -------------------------------------------------------------------


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise BadResponse(f"{where}.{key}: missing")
    return obj[key]


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadResponse(f"{where}: expected an array, got {type(value).__name__}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadResponse(f"{where}: expected an integer, got {value!r:.40}")
    return value


def _opt_str(value: Any, where: str) -> str:
    """Return a nullable string field as a label value: None becomes ``""``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadResponse(f"{where}: expected a string or null, got {value!r:.40}")
    return value


def parse_amount_value(value: Any, where: str) -> float:
    """Return a cost amount given as a JSON number or as a decimal string."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond the float range
            number = None
    elif isinstance(value, str) and _DECIMAL.match(value.strip()):
        number = float(value.strip())
    else:
        number = None
    if number is None or not math.isfinite(number):
        raise BadResponse(
            f"{where}: expected a number or a decimal string, got {value!r:.40}"
        )
    return number


def parse_page(body: Any, where: str) -> tuple[list[Any], bool, str | None]:
    """Return the buckets, `has_more` and `next_page` of a costs or usage page."""
    page = _object(body, where)
    data = _list(_field(page, "data", where), f"{where}.data")
    has_more = _field(page, "has_more", where)
    if not isinstance(has_more, bool):
        raise BadResponse(f"{where}.has_more: expected true or false")
    next_page = page.get("next_page")
    if next_page is not None and not isinstance(next_page, str):
        raise BadResponse(f"{where}.next_page: expected a string or null")
    if has_more and not next_page:
        raise BadResponse(f"{where}.next_page: missing although has_more is true")
    return data, has_more, next_page


def parse_cost_bucket(
    bucket: Any, where: str, strings: dict[str, str] | None = None
) -> tuple[int, list[CostLine]]:
    """Return a costs bucket's day and its lines; results without an amount add 0.

    `strings` interns project ids, line items and currencies across buckets: a large
    organization repeats the same few thousand strings hundreds of thousands of times.
    """
    shared: dict[str, str] = {} if strings is None else strings
    obj = _object(bucket, where)
    day = _int(_field(obj, "start_time", where), f"{where}.start_time")
    if day % DAY:
        raise BadResponse(f"{where}.start_time: {day} is not 00:00 UTC")
    results = _list(_field(obj, "results", where), f"{where}.results")
    lines = []
    for i, item in enumerate(results):
        at = f"{where}.results[{i}]"
        result = _object(item, at)
        kind = result.get("object")
        if kind != "organization.costs.result":
            raise BadResponse(
                f"{at}.object: expected organization.costs.result, got {kind!r:.60}"
            )
        amount = result.get("amount")
        if amount is None:
            continue  # optional in the spec: such a result carries no cost
        amount = _object(amount, f"{at}.amount")
        value = parse_amount_value(
            _field(amount, "value", f"{at}.amount"), f"{at}.amount.value"
        )
        currency = _field(amount, "currency", f"{at}.amount")
        if not isinstance(currency, str) or not currency:
            raise BadResponse(f"{at}.amount.currency: expected a currency code")
        project_id = _opt_str(result.get("project_id"), f"{at}.project_id")
        line_item = _opt_str(result.get("line_item"), f"{at}.line_item")
        lines.append(
            CostLine(
                day=day,
                project_id=shared.setdefault(project_id, project_id),
                line_item=shared.setdefault(line_item, line_item),
                currency=shared.setdefault(currency, currency),
                value=value,
            )
        )
    return day, lines


@dataclass(frozen=True, slots=True)
class UsageKind:
    """What one usage endpoint returns and how it may be grouped (the spec)."""

    required: tuple[str, ...]
    dims: tuple[str, ...]
    group_by: tuple[str, ...]


_PEOPLE = ("project_id", "user_id", "api_key_id", "model")
USAGE_KINDS: dict[str, UsageKind] = {
    "completions": UsageKind(
        ("input_tokens", "output_tokens", "num_model_requests"),
        (*_PEOPLE, "batch", "service_tier"),
        ("project_id", "model", "batch"),
    ),
    "embeddings": UsageKind(
        ("input_tokens", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "moderations": UsageKind(
        ("input_tokens", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "images": UsageKind(
        ("images", "num_model_requests"),
        (*_PEOPLE, "size", "source"),
        ("project_id", "model", "size", "source"),
    ),
    "audio_speeches": UsageKind(
        ("characters", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "audio_transcriptions": UsageKind(
        ("seconds", "num_model_requests"), _PEOPLE, ("project_id", "model")
    ),
    "vector_stores": UsageKind(("usage_bytes",), ("project_id",), ("project_id",)),
    "code_interpreter_sessions": UsageKind(
        ("num_sessions",), ("project_id",), ("project_id",)
    ),
}
"""The eight usage endpoints: required counters, dimensions, default grouping."""

USAGE_COUNTERS = frozenset(
    {
        "num_model_requests",
        "images",
        "characters",
        "seconds",
        "usage_bytes",
        "num_sessions",
    }
)
"""Numeric fields other than `*_tokens` that are amounts (or, for bytes, a level)."""


def usage_group_by(kind: str, *, by_user: bool, by_api_key: bool) -> list[str]:
    """Return the `group_by` values for one endpoint under the settings."""
    spec = USAGE_KINDS[kind]
    extra = [
        d
        for d, on in (("user_id", by_user), ("api_key_id", by_api_key))
        if on and d in spec.dims
    ]
    return [*spec.group_by, *extra]


def _counter(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponse(f"{where}: expected a number, got {value!r:.40}")
    number = float(value)
    if not math.isfinite(number):
        raise BadResponse(f"{where}: expected a finite number")
    return number


def _shared(cache: dict[Any, Any], value: T) -> T:
    """Return the one stored copy of an equal immutable `value`."""
    return cache.setdefault(value, value)  # type: ignore[no-any-return]


def parse_usage_bucket(
    bucket: Any,
    where: str,
    kind: str,
    step: int,
    tuples: dict[Any, Any] | None = None,
) -> tuple[int, list[UsageLine]]:
    """Return a usage bucket's start and its lines, naming any bad field.

    Required counters must be numbers; every other `*_tokens` field becomes a counter
    too (new token types appear without a code change); unknown fields are ignored.
    """
    shared_tuples: dict[Any, Any] = {} if tuples is None else tuples
    spec = USAGE_KINDS[kind]
    expected = f"organization.usage.{kind}.result"
    obj = _object(bucket, where)
    start = _int(_field(obj, "start_time", where), f"{where}.start_time")
    if start % step:
        raise BadResponse(f"{where}.start_time: {start} is not a bucket start")
    results = _list(_field(obj, "results", where), f"{where}.results")
    lines = []
    for i, item in enumerate(results):
        at = f"{where}.results[{i}]"
        result = _object(item, at)
        if result.get("object") != expected:
            raise BadResponse(
                f"{at}.object: expected {expected}, got {result.get('object')!r:.60}"
            )
        fields: list[str] = []
        values: list[float] = []
        for name in spec.required:
            value = result.get(name)
            if value is None:
                raise BadResponse(f"{at}.{name}: missing")
            fields.append(name)
            values.append(_counter(value, f"{at}.{name}"))
        for name, value in result.items():
            if name in spec.required or value is None:
                continue
            if name.endswith("_tokens") or name in USAGE_COUNTERS:
                fields.append(name)
                values.append(_counter(value, f"{at}.{name}"))
        dims = []
        for dim in spec.dims:
            raw = result.get(dim)
            if dim == "batch" and isinstance(raw, bool):
                text = "true" if raw else "false"
            else:
                text = _opt_str(raw, f"{at}.{dim}")
            dims.append((dim, text))
        lines.append(
            UsageLine(
                start,
                kind,
                _shared(shared_tuples, tuple(dims)),
                _shared(shared_tuples, tuple(fields)),
                tuple(values),
            )
        )
    return start, lines


def parse_projects_page(body: Any, where: str) -> tuple[list[Project], bool]:
    """Return the projects of one list page and `has_more`."""
    page = _object(body, where)
    data = _list(_field(page, "data", where), f"{where}.data")
    has_more = _field(page, "has_more", where)
    if not isinstance(has_more, bool):
        raise BadResponse(f"{where}.has_more: expected true or false")
    projects = []
    for i, item in enumerate(data):
        at = f"{where}.data[{i}]"
        obj = _object(item, at)
        project_id = _field(obj, "id", at)
        if not isinstance(project_id, str) or not project_id:
            raise BadResponse(f"{at}.id: expected a non-empty string")
        name = obj.get("name")
        if name is not None and not isinstance(name, str):
            raise BadResponse(f"{at}.name: expected a string or null")
        archived = obj.get("archived_at") is not None or obj.get("status") == "archived"
        projects.append(Project(project_id, name, archived))
    return projects, has_more


def decode_json(content: bytes, where: str) -> Any:
    """Decode a JSON body strictly (no NaN or Infinity), naming the endpoint."""
    try:
        return loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadResponse(f"{where}: the answer is not valid JSON ({exc})") from None


def _error_message(content: bytes) -> str:
    """Return the `error.message` of an ErrorResponse, trimmed, or ``""``."""
    try:
        message = json.loads(content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return " ".join(str(message).split())[:200]


# -- the client ---------------------------------------------------------------------


class AdminApi:
    """Fetches whole answers from the Admin API, page by page, with retries."""

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
        try:
            resp = send(
                self._session,
                "GET",
                self._base_url + path,
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
        status = resp.status_code
        if status == 200:
            return resp
        with resp:
            if status in (401, 403):
                raise AuthRejected(f"{where}: admin key rejected (HTTP {status})")
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(resp.headers)
                raise Transient(f"{where}: HTTP {status}", retry_after=retry_after)
            message = _error_message(resp.content)
            suffix = f": {message}" if message else ""
            raise RequestRejected(f"{where}: HTTP {status}{suffix}")

    def _get(self, path: str, params: list[tuple[str, str]]) -> Any:
        for attempt in self._retrying():
            with attempt, self._send(path, params) as resp:
                return decode_json(resp.content, f"GET {path}")
        raise AssertionError("unreachable: the retry policy re-raises")

    def fetch_projects(self) -> list[Project]:
        """Return every project, archived ones included."""
        projects: list[Project] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            params = [("include_archived", "true"), ("limit", str(PROJECTS_LIMIT))]
            if after is not None:
                params.append(("after", after))
            body = self._get(PROJECTS_PATH, params)
            page, has_more = parse_projects_page(body, f"GET {PROJECTS_PATH}")
            projects.extend(page)
            if not has_more:
                return projects
            if not page:
                raise BadResponse(f"GET {PROJECTS_PATH}: has_more on an empty page")
            last_id = body.get("last_id") or page[-1].id
            if last_id == after:
                raise BadResponse(f"GET {PROJECTS_PATH}.last_id: repeats {after!r}")
            after = last_id
        raise BadResponse(f"GET {PROJECTS_PATH}: more than {MAX_PAGES} pages")

    def fetch_costs(self, start: int, end: int) -> Iterator[list[CostLine]]:
        """Yield the cost lines of every day in `[start, end)`, one page at a time."""
        params = [
            ("bucket_width", "1d"),
            ("group_by[]", "project_id"),
            ("group_by[]", "line_item"),
        ]
        yield from self._buckets(
            COSTS_PATH,
            params,
            start,
            end,
            DAY,
            COSTS_MAX_LIMIT,
            lambda bucket, where: parse_cost_bucket(bucket, where, self._strings),
        )

    def fetch_usage(
        self, kind: str, start: int, end: int, width: str, group_by: Sequence[str]
    ) -> Iterator[list[UsageLine]]:
        """Yield the usage lines of one endpoint for `[start, end)`, page by page."""
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
            lambda bucket, where: parse_usage_bucket(
                bucket, where, kind, step, self._tuples
            ),
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
    ) -> Iterator[list[T]]:
        """Yield the records of every bucket in `[start, end)`, one page at a time.

        One query per `max_limit` buckets (the API's largest `limit` for the width),
        following `next_page` with the query's exact parameters. Each page is decoded
        as a stream, one bucket at a time, and handed over only when it is whole. A
        bucket served twice or outside the query's range is a bad answer, never
        summed.
        """
        seen: set[int] = set()
        segment = start
        while segment < end:
            seg_end = min(end, segment + max_limit * step)
            base = [("start_time", str(segment)), *params, ("limit", str(max_limit))]
            if seg_end != end:  # the last query leaves end_time to the API (now)
                base.append(("end_time", str(seg_end)))
            query = _Query(path, base, segment, seg_end, step, final=seg_end == end)
            yield from self._query(query, parse, seen)
            segment = seg_end

    def _query(
        self, query: _Query, parse: BucketParser[T], seen: set[int]
    ) -> Iterator[list[T]]:
        where = f"GET {query.path}"
        cursors: set[str] = set()
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            params = query.params
            if page_token is not None:
                params = [*params, ("page", page_token)]
            page = self._page(query, params, parse, seen)
            seen.update(page.starts)
            yield page.records
            if not page.has_more:
                return
            page_token = page.next_page
            assert page_token is not None  # parse_page guarantees it
            if page_token in cursors:
                raise BadResponse(f"{where}.next_page: the cursor repeats")
            cursors.add(page_token)
        raise BadResponse(f"{where}: more than {MAX_PAGES} pages")

    def _page(
        self,
        query: _Query,
        params: list[tuple[str, str]],
        parse: BucketParser[T],
        seen: set[int],
    ) -> _Page[T]:
        """Fetch and decode one page whole, retrying transient failures."""
        for attempt in self._retrying():
            with attempt, self._send(query.path, params, stream=True) as resp:
                return _decode_page(resp, query, parse, seen)
        raise AssertionError("unreachable: the retry policy re-raises")


@dataclass(frozen=True, slots=True)
class _Query:
    """One bucket query: path, parameters (without `page`) and the range it covers."""

    path: str
    params: list[tuple[str, str]]
    start: int
    end: int
    step: int
    final: bool


@dataclass(slots=True)
class _Page(Generic[T]):
    """One page, decoded whole."""

    records: list[T] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    has_more: bool = False
    next_page: str | None = None


def _decode_page(
    resp: requests.Response, query: _Query, parse: BucketParser[T], seen: set[int]
) -> _Page[T]:
    """Decode a streamed page bucket by bucket, checking each bucket's start."""
    where = f"GET {query.path}"
    envelope: dict[str, Any] = {}
    page: _Page[T] = _Page()
    body = iter_body(resp, what=where, unavailable=Transient)
    buckets = stream_object(body, "data", envelope.__setitem__)
    try:
        for i, bucket in enumerate(buckets):
            start, records = parse(bucket, f"{where}: data[{i}]")
            if query.final and start >= query.end:
                continue  # the API's clock is already past our window's end
            if not query.start <= start < query.end:
                raise BadResponse(
                    f"{where}: data[{i}].start_time: {start} is outside the "
                    f"requested {query.start}..{query.end}"
                )
            if start in seen or start in page.starts:
                raise BadResponse(f"{where}: data[{i}]: bucket {start} served twice")
            page.starts.append(start)
            page.records.extend(records)
    except NotAnObject:
        raise BadResponse(f"{where}: expected an object") from None
    except StreamError as exc:
        raise BadResponse(f"{where}: the answer is not valid JSON ({exc})") from None
    _, page.has_more, page.next_page = parse_page(envelope, where)
    return page
