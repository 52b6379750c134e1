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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from tenacity import Retrying

from openai_cost_pusher.config import Secret
from openai_cost_pusher.errors import (
    AuthRejected,
    BadResponse,
    RequestRejected,
    Transient,
)
from openai_cost_pusher.jsonstream import NotAnObject, StreamError, stream_object
from openai_cost_pusher.model import CostLine, Project
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
COSTS_MAX_LIMIT = 180
PROJECTS_LIMIT = 100
MAX_PAGES = 10_000

_DECIMAL = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$")

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


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(content: bytes, where: str) -> Any:
    """Decode a JSON body strictly (no NaN or Infinity), naming the endpoint."""
    try:
        return json.loads(content, parse_constant=_reject_constant)
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
        """Yield the cost lines of every day in `[start, end)`, one page at a time.

        One query per 180 days (the API's largest `limit`), following `next_page`
        with the query's exact parameters. Each page is decoded as a stream, one
        bucket at a time, and handed over only when it is whole. A day served twice
        or outside the query's range is a bad answer, never summed.
        """
        seen: set[int] = set()
        segment = start
        while segment < end:
            seg_end = min(end, segment + COSTS_MAX_LIMIT * DAY)
            yield from self._costs_query(
                segment, seg_end, final=seg_end == end, seen=seen
            )
            segment = seg_end

    def _costs_query(
        self, start: int, end: int, *, final: bool, seen: set[int]
    ) -> Iterator[list[CostLine]]:
        where = f"GET {COSTS_PATH}"
        base = [
            ("start_time", str(start)),
            ("bucket_width", "1d"),
            ("group_by[]", "project_id"),
            ("group_by[]", "line_item"),
            ("limit", str(COSTS_MAX_LIMIT)),
        ]
        if not final:  # the last query leaves end_time to the API's default (now)
            base.append(("end_time", str(end)))
        cursors: set[str] = set()
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            params = base if page_token is None else [*base, ("page", page_token)]
            page = self._costs_page(params, start, end, final=final, seen=seen)
            seen.update(page.days)
            yield page.lines
            if not page.has_more:
                return
            page_token = page.next_page
            assert page_token is not None  # parse_page guarantees it
            if page_token in cursors:
                raise BadResponse(f"{where}.next_page: the cursor repeats")
            cursors.add(page_token)
        raise BadResponse(f"{where}: more than {MAX_PAGES} pages")

    def _costs_page(
        self,
        params: list[tuple[str, str]],
        start: int,
        end: int,
        *,
        final: bool,
        seen: set[int],
    ) -> _CostsPage:
        """Fetch and decode one costs page whole, retrying transient failures."""
        for attempt in self._retrying():
            with attempt, self._send(COSTS_PATH, params, stream=True) as resp:
                return self._decode_costs_page(resp, start, end, final, seen)
        raise AssertionError("unreachable: the retry policy re-raises")

    def _decode_costs_page(
        self,
        resp: requests.Response,
        start: int,
        end: int,
        final: bool,
        seen: set[int],
    ) -> _CostsPage:
        where = f"GET {COSTS_PATH}"
        envelope: dict[str, Any] = {}
        page = _CostsPage()
        body = iter_body(resp, what=where, unavailable=Transient)
        buckets = stream_object(body, "data", envelope.__setitem__)
        try:
            for i, bucket in enumerate(buckets):
                day, lines = parse_cost_bucket(
                    bucket, f"{where}: data[{i}]", self._strings
                )
                if final and day >= end:
                    continue  # the API's clock already reached tomorrow
                if not start <= day < end:
                    raise BadResponse(
                        f"{where}: data[{i}].start_time: {day} is "
                        f"outside the requested {start}..{end}"
                    )
                if day in seen or day in page.days:
                    raise BadResponse(f"{where}: data[{i}]: day {day} served twice")
                page.days.append(day)
                page.lines.extend(lines)
        except NotAnObject:
            raise BadResponse(f"{where}: expected an object") from None
        except StreamError as exc:
            msg = f"{where}: the answer is not valid JSON ({exc})"
            raise BadResponse(msg) from None
        _, page.has_more, page.next_page = parse_page(envelope, where)
        return page


@dataclass(slots=True)
class _CostsPage:
    """One costs page, decoded whole."""

    lines: list[CostLine] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    has_more: bool = False
    next_page: str | None = None
