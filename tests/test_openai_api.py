"""Test the Admin API client against the fake Admin API over real HTTP, and its parsers.

The client runs with a real `requests` session against `tests.fake_openai.FakeOpenAI`
on 127.0.0.1 (no mocks); retries use the real policy with recorded sleeps, so no test
waits for a backoff. The pure page parsers are tested with tables.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from openai_cost_pusher import openai_api
from openai_cost_pusher.config import Secret
from openai_cost_pusher.errors import (
    AuthRejected,
    BadResponse,
    RequestRejected,
    Transient,
)
from openai_cost_pusher.model import CostLine, Project, Rejected, UsageLine
from openai_cost_pusher.openai_api import COSTS_MAX_LIMIT, AdminApi
from openai_cost_pusher.parsers import (
    BadField,
    BadResult,
    CostBucket,
    _cost_line,
    parse_amount_value,
    parse_cost_bucket,
    parse_page,
    parse_projects_page,
    parse_usage_bucket,
)
from openai_cost_pusher.transport import (
    MAX_ATTEMPTS,
    USER_AGENT,
    Timeouts,
    make_session,
    retry_policy,
)
from tests.fake_openai import FakeOpenAI, Fault, RecordedRequest

DAY = 86_400
T0 = 1_730_419_200  # 2024-11-01 00:00 UTC
DAYS = 10
END = T0 + DAYS * DAY  # the window [T0, END) ends with "today"
NOW = END - DAY + 3600  # 01:00 UTC on the window's last day
KEY = "sk-admin-TEST-key-9f8e7d6c5b4a"
COSTS = "/organization/costs"
PROJECTS = "/organization/projects"
ITEMS = ("gpt-4o, input", "gpt-4o, output", None)
PROJECT_IDS = ("proj_a", "proj_b", None)


@dataclass
class Client:
    """An AdminApi wired to the fake, with its recorded sleeps and request counts."""

    api: AdminApi
    sleeps: list[float] = field(default_factory=list)
    counts: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(name="org")
def _org() -> Iterator[FakeOpenAI]:
    """Run a fake Admin API with pages of three buckets and a fixed clock."""
    with FakeOpenAI(KEY, page_size=3, now=lambda: NOW) as fake:
        yield fake


@pytest.fixture(name="session")
def _session() -> Iterator[requests.Session]:
    """Return the product's session, closed after the test."""
    with make_session() as session:
        yield session


def _client(
    org: FakeOpenAI,
    session: requests.Session,
    *,
    key: str = KEY,
    base_url: str | None = None,
    timeouts: Timeouts | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    budget: float = 60.0,
) -> Client:
    """Return a client of `org` whose retries record their waits instead of sleeping."""
    stop = threading.Event()
    sleeps: list[float] = []
    counts: list[tuple[str, str]] = []
    api = AdminApi(
        session,
        base_url or org.base_url,
        Secret(key),
        timeouts=timeouts or Timeouts(connect=2.0, read=5.0),
        retrying=lambda: retry_policy(
            budget, stop, sleep=sleeps.append, max_attempts=max_attempts
        ),
        stop=stop,
        count_request=lambda endpoint, code: counts.append((endpoint, code)),
    )
    return Client(api, sleeps, counts)


def _fill_costs(org: FakeOpenAI, days: int = DAYS) -> None:
    """Store costs on every day of the window, for several projects and items."""
    for d in range(days):
        for p, project_id in enumerate(PROJECT_IDS):
            for i, item in enumerate(ITEMS):
                if (d + p + i) % 4 == 3:
                    continue  # not every combination has a cost every day
                org.set_cost(
                    T0 + d * DAY,
                    project_id,
                    item,
                    round(0.37 * (d + 1) + 1.1 * p + 0.013 * i, 6),
                )
        org.set_cost(T0 + d * DAY, "proj_a", "fine-tuning", 2.5 + d, currency="eur")


def _expected(org: FakeOpenAI) -> list[CostLine]:
    """Return the fake's stored costs as the cost lines the client should yield."""
    return [
        CostLine(day, project_id or "", item or "", currency, value)
        for (day, project_id, item, currency), value in org.costs().items()
    ]


def _same(a: list[CostLine], b: list[CostLine]) -> bool:
    """Tell whether two lists hold the same lines, as multisets."""
    return Counter(a) == Counter(b)


def _without_page(request: RecordedRequest) -> list[tuple[str, str]]:
    """Return a request's query pairs except the cursor, in the order sent."""
    return [(k, v) for k, v in request.query if k != "page"]


def _costs(
    client: Client,
    start: int = T0,
    end: int = END,
    rejected: list[Rejected] | None = None,
) -> list[CostLine]:
    """Fetch and flatten every cost line of `[start, end)`."""
    pages = client.api.fetch_costs(start, end, rejected)
    return [line for page in pages for line in page]


# ------------------------------------------------------------------------ projects


def test_projects_follow_after_across_pages(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """More than 100 projects come back whole, archived ones included, over pages."""
    for n in range(250):
        org.add_project(
            f"proj_{n:03d}",
            None if n % 50 == 7 else f"Project {n}",
            archived=n % 9 == 0,
        )
    client = _client(org, session)
    projects = client.api.fetch_projects()
    assert projects == [
        Project(f"proj_{n:03d}", None if n % 50 == 7 else f"Project {n}", n % 9 == 0)
        for n in range(250)
    ]
    sent = org.requests_to(PROJECTS)
    assert [r.param("after") for r in sent] == [None, "proj_099", "proj_199"]
    for request in sent:
        assert request.param("include_archived") == "true"
        assert request.param("limit") == "100"
    assert client.counts == [("projects", "200")] * 3


@pytest.mark.parametrize("page_size", [1, 7])
def test_projects_pages_smaller_than_limit(
    org: FakeOpenAI, session: requests.Session, page_size: int
) -> None:
    """Pages shorter than `limit` are followed until `has_more` is false."""
    org.project_page_size = page_size
    for n in range(15):
        org.add_project(f"proj_{n:02d}", f"P{n}", archived=n == 3)
    projects = _client(org, session).api.fetch_projects()
    assert [p.id for p in projects] == [f"proj_{n:02d}" for n in range(15)]
    assert [p.archived for p in projects] == [n == 3 for n in range(15)]
    assert len(org.requests_to(PROJECTS)) == -(-15 // page_size)


def test_no_projects(org: FakeOpenAI, session: requests.Session) -> None:
    """An organization without projects gives an empty list after one request."""
    assert _client(org, session).api.fetch_projects() == []
    assert len(org.requests_to(PROJECTS)) == 1


# --------------------------------------------------------------------------- costs


def test_costs_match_the_fake_day_by_day(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """Every day of the window is fetched once and its lines equal the fake's values."""
    _fill_costs(org)
    client = _client(org, session)
    lines = _costs(client)
    assert _same(lines, _expected(org))
    assert {line.day for line in lines} == {T0 + d * DAY for d in range(DAYS)}
    assert len(set(lines)) == len(lines)
    assert client.sleeps == []


def test_the_shared_strings_and_tuples_are_bounded(
    org: FakeOpenAI, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the parsers share from fetch to fetch is emptied once it holds
    `SHARED_MAX` entries, and the lines stay what the fake holds."""
    monkeypatch.setattr(openai_api, "SHARED_MAX", 4)
    _fill_costs(org)
    client = _client(org, session)
    for _ in range(3):
        # full (as a fetch may leave them): the next fetch empties them first
        client.api._strings.update({f"kept{n}": "" for n in range(4)})
        client.api._tuples.update({("kept", n): () for n in range(4)})
        assert _same(_costs(client), _expected(org))
        assert "kept0" not in client.api._strings
        assert ("kept", 0) not in client.api._tuples
        assert client.api._strings  # and fills them again


def test_costs_one_query_with_repeated_parameters(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """The window goes out as one query with the largest limit, over several pages.

    Every page of the query repeats its parameters exactly, plus `page`.
    """
    _fill_costs(org)
    client = _client(org, session)
    _costs(client)
    sent = org.requests_to(COSTS)
    query = [
        ("start_time", str(T0)),
        ("bucket_width", "1d"),
        ("group_by[]", "project_id"),
        ("group_by[]", "line_item"),
        ("limit", str(COSTS_MAX_LIMIT)),
    ]
    # 10 days in pages of 3 buckets: 4 pages, end_time left to the API
    assert len(sent) == 4
    assert [r.param("page") is None for r in sent] == [True, False, False, False]
    for request in sent:
        assert _without_page(request) == query
        assert [k for k, _ in request.query].count("page") <= 1
    pages = [r.param("page") for r in sent[1:]]
    assert len(set(pages)) == len(pages)
    assert client.counts == [("costs", "200")] * 4


def test_costs_group_by_uses_brackets(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """Every page sends `group_by[]=project_id&group_by[]=line_item`."""
    _fill_costs(org)
    _costs(_client(org, session))
    for request in org.requests_to(COSTS):
        grouped = [(k, v) for k, v in request.query if k.startswith("group_by")]
        assert grouped == [("group_by[]", "project_id"), ("group_by[]", "line_item")]


def test_costs_long_window_in_one_paginated_query(session: requests.Session) -> None:
    """A 400-day window goes out as one query (`limit` counts buckets per page, not
    in all) whose pages all carry its exact parameters: ceil(400 / 31) pages where
    the API serves 31 buckets a page, no more."""
    days = 400
    end = T0 + days * DAY
    with FakeOpenAI(KEY, page_size=31, now=lambda: end - DAY + 60) as org:
        for d in range(0, days, 13):
            org.set_cost(T0 + d * DAY, "proj_a", "gpt-4o, input", d + 0.25)
        client = _client(org, session)
        lines = _costs(client, T0, end)
        assert _same(lines, _expected(org))
        sent = org.requests_to(COSTS)
    assert len(sent) == 13
    assert {p.param("start_time") for p in sent} == {str(T0)}
    assert {p.param("limit") for p in sent} == {"180"}
    assert {p.param("end_time") for p in sent} == {None}
    assert all(_without_page(p) == _without_page(sent[0]) for p in sent)


def test_costs_amount_as_decimal_string(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """amount.value served as a decimal string gives the same lines as numbers."""
    _fill_costs(org)
    org.amount_as_string = True
    assert _same(_costs(_client(org, session)), _expected(org))


def test_costs_empty_organization(org: FakeOpenAI, session: requests.Session) -> None:
    """Days without costs (empty `results`) give no lines and no error."""
    assert _costs(_client(org, session)) == []
    assert len(org.requests_to(COSTS)) == 4


def test_costs_yield_day_by_day(org: FakeOpenAI, session: requests.Session) -> None:
    """fetch_costs is lazy and hands on one day at a time, as soon as it is parsed:
    the first day comes after one request, the fourth (on page two) after two."""
    _fill_costs(org)
    days = _client(org, session).api.fetch_costs(T0, END)
    assert {line.day for line in next(days)} == {T0}
    assert len(org.requests_to(COSTS)) == 1
    assert [{line.day for line in next(days)} for _ in range(3)] == [
        {T0 + DAY},
        {T0 + 2 * DAY},
        {T0 + 3 * DAY},  # page_size 3: the first day of page two
    ]
    assert len(org.requests_to(COSTS)) == 2


def test_costs_each_day_handed_on_once_and_whole(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """Over pages and queries, every hand-off holds all the lines of one day, and
    every day with costs comes exactly once; days without costs yield nothing."""
    _fill_costs(org)
    for key in [k for k in org.costs() if k[0] == T0 + 4 * DAY]:
        org.set_cost(key[0], key[1], key[2], 0.0, key[3])  # still a result
    org.page_size = 2
    handed = list(_client(org, session).api.fetch_costs(T0, END))
    days = [line.day for lines in handed for line in lines[:1]]
    assert days == [T0 + d * DAY for d in range(DAYS)]
    assert all(len({line.day for line in lines}) == 1 for lines in handed)
    assert _same([line for lines in handed for line in lines], _expected(org))


def _spy_on_parsing(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[bool]:
    """Record, for each costs bucket, whether the garbage collector ran while any of
    its results batches was parsed or when it was finished (then raise KeyError if
    `fail`)."""
    seen: list[bool] = []

    class Spy(CostBucket):
        running = False

        def results(self, batch: list[Any], first: bool, digest: bytes = b"") -> None:
            self.running |= gc.isenabled()
            super().results(batch, first, digest)

        def finish(self) -> tuple[int, list[CostLine]]:
            seen.append(self.running or gc.isenabled())
            if fail:
                raise KeyError("surprise")
            return super().finish()

    monkeypatch.setattr(openai_api, "CostBucket", Spy)
    return seen


def test_collector_paused_only_while_a_day_is_decoded(
    org: FakeOpenAI, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic garbage collector is off while a bucket is decoded and parsed, and
    on again whenever the caller holds the lines."""
    _fill_costs(org)
    seen = _spy_on_parsing(monkeypatch)
    running = [gc.isenabled() for _ in _client(org, session).api.fetch_costs(T0, END)]
    assert running == [True] * DAYS
    assert seen == [False] * DAYS
    assert gc.isenabled()


def test_collector_on_again_after_a_failure(
    org: FakeOpenAI, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fails while a bucket is parsed, the collector runs again after."""
    _fill_costs(org)
    seen = _spy_on_parsing(monkeypatch, fail=True)
    with pytest.raises(BadResponse, match=r"cannot be read \(KeyError\)"):
        _costs(_client(org, session))
    assert seen == [False]
    assert gc.isenabled()


def test_collector_left_off_if_it_was_off(
    org: FakeOpenAI, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that turned the collector off keeps it off."""
    _fill_costs(org)
    seen = _spy_on_parsing(monkeypatch)
    gc.disable()
    try:
        assert _same(_costs(_client(org, session)), _expected(org))
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert seen == [False] * DAYS


# ------------------------------------------------------------- malformed answers


def _bucket(start: int = T0, results: list[Any] | None = None) -> dict[str, Any]:
    """Return a costs bucket with one valid result unless `results` is given."""
    if results is None:
        results = [_result()]
    return {
        "object": "bucket",
        "start_time": start,
        "end_time": start + DAY,
        "results": results,
    }


def _result(**changes: Any) -> dict[str, Any]:
    """Return a valid CostsResult with `changes` applied (None deletes a key)."""
    result: dict[str, Any] = {
        "object": "organization.costs.result",
        "amount": {"value": 1.5, "currency": "usd"},
        "line_item": "gpt-4o, input",
        "project_id": "proj_a",
    }
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def _page(*buckets: dict[str, Any], next_page: str | None = None) -> dict[str, Any]:
    """Return a costs page holding `buckets`."""
    return {
        "object": "page",
        "data": list(buckets),
        "has_more": next_page is not None,
        "next_page": next_page,
    }


_BAD_COSTS: list[tuple[str, Fault, str]] = [
    (
        "not-json",
        Fault.malformed(),
        "GET /organization/costs: the answer is not valid JSON",
    ),
    (
        "nan",
        Fault(status=200, body=b'{"data": [], "has_more": false, "x": NaN}'),
        "GET /organization/costs: the answer is not valid JSON",
    ),
    (
        "not-an-object",
        Fault.wrong_shape([]),
        "GET /organization/costs: expected an object",
    ),
    (
        "data-missing",
        Fault.wrong_shape({"object": "page", "has_more": False}),
        "GET /organization/costs.data: missing",
    ),
    (
        "data-string",
        Fault.wrong_shape(),
        "GET /organization/costs.data: expected an array, got str",
    ),
    (
        "has-more-string",
        Fault.wrong_shape({"object": "page", "data": [], "has_more": "false"}),
        "GET /organization/costs.has_more: expected true or false",
    ),
    (
        "has-more-missing",
        Fault.wrong_shape({"object": "page", "data": []}),
        "GET /organization/costs.has_more: missing",
    ),
    (
        "next-page-missing",
        Fault.wrong_shape({"object": "page", "data": [], "has_more": True}),
        "GET /organization/costs.next_page: missing although has_more is true",
    ),
    (
        "next-page-number",
        Fault.wrong_shape(
            {"object": "page", "data": [], "has_more": True, "next_page": 2}
        ),
        "GET /organization/costs.next_page: expected a string or null",
    ),
    (
        "result-object",
        Fault.wrong_shape(
            _page(
                _bucket(
                    results=[_result(object="organization.usage.completions.result")]
                )
            )
        ),
        "GET /organization/costs: data[0].results[0].object: expected "
        "organization.costs.result",
    ),
    (
        "result-object-missing",
        Fault.wrong_shape(_page(_bucket(results=[_result(object=None)]))),
        "GET /organization/costs: data[0].results[0].object: expected",
    ),
    (
        "value-true",
        Fault.wrong_shape(
            _page(_bucket(results=[_result(amount={"value": True, "currency": "usd"})]))
        ),
        "GET /organization/costs: data[0].results[0].amount.value: expected a number "
        "or a decimal string, got True",
    ),
    (
        "value-abc",
        Fault.wrong_shape(
            _page(
                _bucket(results=[_result(amount={"value": "abc", "currency": "usd"})])
            )
        ),
        "GET /organization/costs: data[0].results[0].amount.value: expected a number "
        "or a decimal string, got 'abc'",
    ),
    (
        "value-missing",
        Fault.wrong_shape(
            _page(_bucket(results=[_result(amount={"currency": "usd"})]))
        ),
        "GET /organization/costs: data[0].results[0].amount.value: missing",
    ),
    (
        "currency-missing",
        Fault.wrong_shape(_page(_bucket(results=[_result(amount={"value": 1})]))),
        "GET /organization/costs: data[0].results[0].amount.currency: missing",
    ),
    (
        "unaligned-start",
        Fault.wrong_shape(_page(_bucket(start=T0 + 3600))),
        f"GET /organization/costs: data[0].start_time: {T0 + 3600} is not 00:00 UTC",
    ),
    (
        "start-string",
        Fault.wrong_shape(_page({**_bucket(), "start_time": str(T0)})),
        "GET /organization/costs: data[0].start_time: expected an integer",
    ),
    (
        "day-before-window",
        Fault.wrong_shape(_page(_bucket(start=T0 - DAY))),
        f"GET /organization/costs: data[0].start_time: {T0 - DAY} is outside the "
        f"requested {T0}..{T0 + DAY}",
    ),
    (
        "results-missing",
        Fault.wrong_shape(_page({"object": "bucket", "start_time": T0})),
        "GET /organization/costs: data[0].results: missing",
    ),
]


@pytest.mark.parametrize(
    ("fault", "message"),
    [pytest.param(f, m, id=i) for i, f, m in _BAD_COSTS],
)
def test_costs_bad_answer(
    org: FakeOpenAI, session: requests.Session, fault: Fault, message: str
) -> None:
    """A costs answer of the wrong shape raises BadResponse naming endpoint, field."""
    org.inject(fault, path_prefix=COSTS)
    client = _client(org, session)
    with pytest.raises(BadResponse) as info:
        _costs(client, T0, T0 + DAY)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)
    assert len(org.requests_to(COSTS)) == 1  # a bad answer is not retried
    assert client.sleeps == []


def test_costs_day_served_twice(org: FakeOpenAI, session: requests.Session) -> None:
    """A day served on two pages of one fetch is a bad answer, never summed."""
    org.inject(
        Fault.wrong_shape(_page(_bucket(), next_page="page_two")), path_prefix=COSTS
    )
    org.inject(Fault.wrong_shape(_page(_bucket())), path_prefix=COSTS)
    with pytest.raises(
        BadResponse,
        match=rf"^GET /organization/costs: data\[0\]: bucket {T0} served "
        "twice$",
    ):
        _costs(_client(org, session), T0, T0 + DAY)
    assert [r.param("page") for r in org.requests_to(COSTS)] == [None, "page_two"]


def test_costs_cursor_repeats(org: FakeOpenAI, session: requests.Session) -> None:
    """A server that hands out the same cursor twice is a bad answer, not a loop."""
    org.inject(
        Fault.wrong_shape(_page(next_page="page_same")), path_prefix=COSTS, times=3
    )
    with pytest.raises(BadResponse, match=r"next_page: the cursor repeats"):
        _costs(_client(org, session), T0, T0 + DAY)


# ------------------------------------------- a malformed result withholds its bucket

MONTH = 30
USAGE = "/organization/usage/completions"
COMPLETIONS_GROUP_BY = ["project_id", "model", "batch"]


def _day_results(day: int, count: int = 20) -> list[dict[str, Any]]:
    """Return `count` valid results for day number `day`, one project each."""
    return [
        _result(
            project_id=f"proj_{k:02d}",
            amount={"value": round(0.5 + day + k / 100, 6), "currency": "usd"},
        )
        for k in range(count)
    ]


def _month(days: int = MONTH, first: int = T0) -> list[dict[str, Any]]:
    """Return `days` consecutive daily buckets of 20 valid results each."""
    return [_bucket(first + d * DAY, _day_results(d)) for d in range(days)]


def _lines_of(buckets: list[dict[str, Any]]) -> list[CostLine]:
    """Return the cost lines that valid `buckets` stand for."""
    return [
        CostLine(
            b["start_time"],
            r["project_id"],
            r["line_item"],
            r["amount"]["currency"],
            r["amount"]["value"],
        )
        for b in buckets
        for r in b["results"]
    ]


_BAD_RESULTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "value-abc",
        {"amount": {"value": "abc", "currency": "usd"}},
        "results[17].amount.value",
        "expected a number or a decimal string, got 'abc'",
    ),
    (
        "object-missing",
        {"object": None},
        "results[17].object",
        "expected organization.costs.result, got None",
    ),
    (
        "project-id-number",
        {"project_id": 7},
        "results[17].project_id",
        "expected a string or null, got 7",
    ),
    (
        "amount-list",
        {"amount": [1]},
        "results[17].amount",
        "expected an object, got list",
    ),
    (
        "currency-missing",
        {"amount": {"value": 1}},
        "results[17].amount.currency",
        "missing",
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [pytest.param(c, p, r, id=i) for i, c, p, r in _BAD_RESULTS],
)
def test_bad_result_withholds_only_its_day(
    org: FakeOpenAI,
    session: requests.Session,
    change: dict[str, Any],
    path: str,
    reason: str,
) -> None:
    """One bad result on day 3 of a 30-day page: 29 whole days and one Rejected."""
    buckets = _month()
    good = _lines_of([b for d, b in enumerate(buckets) if d != 3])
    buckets[3]["results"][17] = _result(**change)
    org.inject(Fault.wrong_shape(_page(*buckets)), path_prefix=COSTS)
    rejected: list[Rejected] = []
    lines = _costs(_client(org, session), T0, T0 + MONTH * DAY, rejected)
    assert lines == good  # not one line of day 3, though 19 of its results are fine
    assert rejected == [Rejected(T0 + 3 * DAY, COSTS, f"data[3].{path}", reason)]


def test_bad_result_without_a_list_fails_the_fetch(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """`rejected=None` keeps the strict rule: one bad result fails the data set."""
    buckets = _month()
    buckets[3]["results"][17]["amount"]["value"] = "abc"
    org.inject(Fault.wrong_shape(_page(*buckets)), path_prefix=COSTS)
    with pytest.raises(BadResponse) as info:
        _costs(_client(org, session), T0, T0 + MONTH * DAY)
    assert str(info.value) == (
        "GET /organization/costs: data[3].results[17].amount.value: expected a "
        "number or a decimal string, got 'abc'"
    )


def _broken_envelope(buckets: list[dict[str, Any]], how: str) -> Fault:
    """Return a page of `buckets` broken in a way no bucket can be blamed for."""
    page = _page(*buckets)
    data = page["data"]
    if how == "start-missing":
        del data[3]["start_time"]
    elif how == "results-object":
        data[3]["results"] = {}
    elif how == "unaligned":
        data[3]["start_time"] += 60
    elif how == "out-of-range":
        data[3]["start_time"] = T0 - DAY
    elif how == "bucket-number":
        data[3] = 5
    elif how == "served-twice":
        data[3]["start_time"] = data[1]["start_time"]  # the rejected bucket's day
    elif how == "has-more-missing":
        del page["has_more"]
    elif how == "data-object":
        page["data"] = {"0": data[0]}
    elif how == "truncated":
        return Fault(status=200, body=json.dumps(page).encode()[:-40])
    elif how == "out-of-order":
        data[2], data[3] = data[3], data[2]
    return Fault.wrong_shape(page)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("start-missing", "GET /organization/costs: data[3].start_time: missing"),
        (
            "results-object",
            "GET /organization/costs: data[3].results: expected an array, got dict",
        ),
        (
            "unaligned",
            f"GET /organization/costs: data[3].start_time: {T0 + 3 * DAY + 60} is "
            "not 00:00 UTC",
        ),
        (
            "out-of-range",
            f"GET /organization/costs: data[3].start_time: {T0 - DAY} is outside the "
            f"requested {T0}..{T0 + 6 * DAY}",
        ),
        ("bucket-number", "GET /organization/costs: data[3]: expected an object"),
        (
            "served-twice",
            f"GET /organization/costs: data[3]: bucket {T0 + DAY} served twice",
        ),
        ("has-more-missing", "GET /organization/costs.has_more: missing"),
        ("data-object", "GET /organization/costs.data: expected an array, got dict"),
        ("truncated", "GET /organization/costs: the answer is not valid JSON"),
        (
            "out-of-order",
            f"GET /organization/costs: data[3].start_time: {T0 + 2 * DAY} comes after "
            f"bucket {T0 + 3 * DAY}: the buckets are not in time order",
        ),
    ],
)
def test_broken_envelope_still_fails_the_fetch(
    org: FakeOpenAI, session: requests.Session, how: str, message: str
) -> None:
    """A broken page or bucket envelope fails the data set even with a list; the
    bad result read before it (day 1, the second bucket) is listed as it was read,
    since a caller may land the days after it before the page ends."""
    buckets = _month(6)
    buckets[1]["results"][0]["amount"]["value"] = "abc"
    org.inject(_broken_envelope(buckets, how), path_prefix=COSTS)
    rejected: list[Rejected] = []
    with pytest.raises(BadResponse) as info:
        _costs(_client(org, session), T0, T0 + 6 * DAY, rejected)
    assert str(info.value).startswith(message), str(info.value)
    broken_first = how == "data-object"  # before data[1] is read
    assert [r.start for r in rejected] == ([] if broken_first else [T0 + DAY])


def test_rejected_bucket_does_not_affect_the_next_page(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A day rejected on page one is listed as soon as it is read, before the next
    day is handed on; page two's days come whole, and its own bad day is listed
    under its own index and day."""
    buckets = _month(6)
    buckets[1]["results"][4]["amount"]["value"] = "1,5"
    buckets[5]["results"][0]["object"] = "bucket"
    org.inject(
        Fault.wrong_shape(_page(*buckets[:3], next_page="page_two")), path_prefix=COSTS
    )
    org.inject(Fault.wrong_shape(_page(*buckets[3:])), path_prefix=COSTS)
    rejected: list[Rejected] = []
    days = _client(org, session).api.fetch_costs(T0, T0 + 6 * DAY, rejected)
    day_one = Rejected(
        T0 + DAY,
        COSTS,
        "data[1].results[4].amount.value",
        "expected a number or a decimal string, got '1,5'",
    )
    assert next(days) == _lines_of([buckets[0]])
    assert rejected == []
    assert next(days) == _lines_of([buckets[2]])
    assert rejected == [day_one]  # listed before a later day is handed on
    assert next(days) == _lines_of([buckets[3]])
    assert rejected == [day_one]
    assert next(days) == _lines_of([buckets[4]])
    assert next(days, None) is None
    assert rejected == [
        day_one,
        Rejected(
            T0 + 5 * DAY,
            COSTS,
            "data[2].results[0].object",
            "expected organization.costs.result, got 'bucket'",
        ),
    ]
    assert [r.param("page") for r in org.requests_to(COSTS)] == [None, "page_two"]


def test_days_handed_on_before_a_broken_envelope_still_fail_the_fetch(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A page whose envelope turns out broken after its days were handed on raises
    BadResponse, not retried; its bad day was listed as it was read. The caller
    fails the data set from the day it was reading on."""
    buckets = _month(3)
    buckets[1]["results"][0]["amount"]["value"] = "abc"
    page = _page(*buckets)
    del page["has_more"]  # after `data`: known only once every day is handed on
    org.inject(Fault.wrong_shape(page), path_prefix=COSTS)
    rejected: list[Rejected] = []
    days = _client(org, session).api.fetch_costs(T0, T0 + 3 * DAY, rejected)
    assert next(days) == _lines_of([buckets[0]])
    assert next(days) == _lines_of([buckets[2]])
    with pytest.raises(BadResponse, match=r"^GET /organization/costs.has_more: miss"):
        next(days)
    assert [r.start for r in rejected] == [T0 + DAY]
    assert len(org.requests_to(COSTS)) == 1


def test_costs_fast_and_strict_parsing_agree() -> None:
    """The inline check of the usual result gives the same lines as the full one:
    integers, decimal strings, null ids, non-ASCII and lone surrogates included, and
    quantities, units and API key ids present, null or left out (as live answers
    do), beside fields in no spec (`organization_id`)."""
    live = {"organization_id": "org-abc", "quantity": 1200, "quantity_unit": "tokens"}
    results = [
        {**_result(), **live, "api_key_id": "key_a"},
        {**_result(), "quantity": 2.5, "quantity_unit": None, "api_key_id": None},
        _result(quantity="0.1739150000000000000000000000", quantity_unit="1000_tokens"),
        _result(amount={"value": "0.1739150000000000000000000000", "currency": "usd"}),
        _result(amount={"value": "12.50", "currency": "usd"}, quantity=2**60),
        _result(quantity=7, quantity_unit="gibibyte_hours", api_key_id="kéy_\ud800"),
        _result(),
        _result(amount={"value": 2, "currency": "usd"}),
        _result(amount={"value": "3.25", "currency": "eur"}),
        _result(amount={"value": -0.0, "currency": "usd"}),
        {**_result(), "project_id": None, "line_item": None},
        _result(project_id=None, line_item=None),  # absent
        _result(line_item="Ünïcode ✓", project_id="proj_\ud800"),
        _result(line_item="a\udfffb"),
        _result(amount=None),
    ]
    day, lines = parse_cost_bucket(_bucket(results=results), "w")
    item = "gpt-4o, input"
    assert (day, lines) == (
        T0,
        [
            CostLine(T0, "proj_a", item, "usd", 1.5, 1200.0, "tokens", "key_a"),
            CostLine(T0, "proj_a", item, "usd", 1.5, 2.5, "", ""),
            CostLine(T0, "proj_a", item, "usd", 1.5, 0.173915, "1000_tokens"),
            CostLine(T0, "proj_a", item, "usd", 0.173915),
            CostLine(T0, "proj_a", item, "usd", 12.5, float(2**60)),
            CostLine(T0, "proj_a", item, "usd", 1.5, 7.0, "gibibyte_hours", "kéy_?"),
            CostLine(T0, "proj_a", "gpt-4o, input", "usd", 1.5),
            CostLine(T0, "proj_a", "gpt-4o, input", "usd", 2.0),
            CostLine(T0, "proj_a", "gpt-4o, input", "eur", 3.25),
            CostLine(T0, "proj_a", "gpt-4o, input", "usd", -0.0),
            CostLine(T0, "", "", "usd", 1.5),
            CostLine(T0, "", "", "usd", 1.5),
            CostLine(T0, "proj_?", "Ünïcode ✓", "usd", 1.5),
            CostLine(T0, "proj_a", "a?b", "usd", 1.5),
        ],
    )
    assert all(type(line.value) is float for line in lines)
    assert all(type(line.quantity) in (float, type(None)) for line in lines)
    # each result alone, through every rule, gives the same line as the bucket did
    strict = [_cost_line(r, T0, "r", {}) for r in results]
    assert [line for line in strict if line is not None] == lines


@pytest.mark.parametrize(
    ("result", "path"),
    [
        (_result(amount={"value": 1e400, "currency": "usd"}), "amount.value"),
        (_result(amount={"value": math.nan, "currency": "usd"}), "amount.value"),
        (_result(amount={"value": 1.5, "currency": ""}), "amount.currency"),
        (_result(amount={"value": 1.5, "currency": 5}), "amount.currency"),
        (_result(project_id=5), "project_id"),
        (_result(line_item=["x"]), "line_item"),
        (_result(object="organization.costs.results"), "object"),
        (_result(quantity="12 tokens"), "quantity"),
        (_result(quantity=True), "quantity"),
        (_result(quantity=1e400), "quantity"),
        (_result(quantity_unit=5), "quantity_unit"),
        (_result(api_key_id=["key_a"]), "api_key_id"),
        ([_result()], ""),
    ],
)
def test_costs_fast_path_leaves_no_rule_out(result: Any, path: str) -> None:
    """Whatever the inline check does not accept goes through every rule."""
    with pytest.raises(BadResult) as info:
        parse_cost_bucket(_bucket(results=[_result(), result]), "w")
    assert info.value.path == f"results[1].{path}".rstrip(".")


def test_rejected_bucket_beyond_the_window_end_is_ignored(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A bad day the API already has past the window's end is neither a line nor
    a rejection: it is outside what was asked for."""
    buckets = _month(3)
    buckets[2]["results"][0]["amount"]["value"] = "abc"
    org.inject(Fault.wrong_shape(_page(*buckets)), path_prefix=COSTS)
    rejected: list[Rejected] = []
    lines = _costs(_client(org, session), T0, T0 + 2 * DAY, rejected)
    assert lines == _lines_of(buckets[:2])
    assert rejected == []


def _usage_result(**changes: Any) -> dict[str, Any]:
    """Return a valid completions usage result with `changes` applied."""
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 100,
        "output_tokens": 20,
        "input_cached_tokens": 10,
        "num_model_requests": 2,
        "project_id": "proj_a",
        "model": "gpt-4o",
        "batch": False,
        **changes,
    }


@pytest.mark.parametrize(
    ("width", "step", "change", "field", "reason"),
    [
        ("1d", DAY, {"input_tokens": "100"}, "input_tokens", "expected a number"),
        (
            "1h",
            3600,
            {"input_cached_tokens": [1]},
            "input_cached_tokens",
            "expected a number, got [1]",
        ),
        ("1h", 3600, {"num_model_requests": None}, "num_model_requests", "missing"),
        ("1d", DAY, {"batch": 1}, "batch", "expected a string or null, got 1"),
    ],
)
def test_bad_usage_result_withholds_only_its_bucket(
    org: FakeOpenAI,
    session: requests.Session,
    width: str,
    step: int,
    change: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    """A counter of the wrong type withholds its usage bucket only."""
    buckets: list[dict[str, Any]] = [
        {
            "object": "bucket",
            "start_time": T0 + k * step,
            "end_time": T0 + (k + 1) * step,
            "results": [_usage_result(model=m) for m in ("gpt-4o", "gpt-4o-mini")],
        }
        for k in range(6)
    ]
    buckets[2]["results"][1] = _usage_result(**change)
    org.inject(Fault.wrong_shape(_page(*buckets)), path_prefix=USAGE)
    rejected: list[Rejected] = []
    api = _client(org, session).api
    pages = api.fetch_usage(
        "completions", T0, T0 + 6 * step, width, COMPLETIONS_GROUP_BY, rejected
    )
    lines: list[UsageLine] = [line for page in pages for line in page]
    assert sorted({line.start for line in lines}) == [
        T0 + k * step for k in range(6) if k != 2
    ]
    assert len(lines) == 5 * 2
    (only,) = rejected
    assert (only.start, only.endpoint, only.path) == (
        T0 + 2 * step,
        USAGE,
        f"data[2].results[1].{field}",
    )
    assert only.reason.startswith(reason), only.reason


def test_bad_usage_result_without_a_list_fails_the_fetch(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """Without a list, a bad usage counter fails the fetch, naming its path."""
    bucket = {"object": "bucket", "start_time": T0, "end_time": T0 + DAY}
    bucket["results"] = [_usage_result(output_tokens=True)]
    org.inject(Fault.wrong_shape(_page(bucket)), path_prefix=USAGE)
    api = _client(org, session).api
    with pytest.raises(BadResponse) as info:
        list(api.fetch_usage("completions", T0, T0 + DAY, "1d", COMPLETIONS_GROUP_BY))
    assert str(info.value) == (
        "GET /organization/usage/completions: data[0].results[0].output_tokens: "
        "expected a number, got True"
    )


# ------------------------------------------------------------ tool call usage


@pytest.mark.parametrize(
    ("by_user", "by_api_key", "web", "files"),
    [
        (
            False,
            False,
            ["project_id", "model", "context_level"],
            ["project_id"],
        ),
        (
            True,
            True,
            ["project_id", "model", "context_level", "user_id", "api_key_id"],
            ["project_id", "user_id", "api_key_id"],
        ),
    ],
)
def test_tool_call_usage_group_by(
    by_user: bool, by_api_key: bool, web: list[str], files: list[str]
) -> None:
    """Web search calls group by project, model and context level, file search
    calls by project; user and key grouping are added where asked."""
    group = openai_api.usage_group_by
    assert group("web_search_calls", by_user=by_user, by_api_key=by_api_key) == web
    assert group("file_search_calls", by_user=by_user, by_api_key=by_api_key) == files


def test_tool_call_usage_fetched_from_the_fake(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """Both tool call endpoints are read with their own result objects; the web
    search's context levels stay apart, the bucket that holds now (ending at now in
    the answer) is the bucket of its start, with its whole amount."""
    for day in (T0, NOW - 3600):  # the window's first day and its last, today
        for level, calls in (("low", 4), ("high", 9)):
            org.add_usage(
                "web_search_calls",
                day,
                project_id="proj_a",
                model="gpt-4o",
                context_level=level,
                num_model_requests=calls,
                num_requests=2 * calls,
            )
        org.add_usage("file_search_calls", day, project_id="proj_b", num_requests=7)
    org.add_usage("file_search_calls", NOW - 60, project_id="proj_b", num_requests=1)
    api = _client(org, session).api
    web_group = openai_api.usage_group_by(
        "web_search_calls", by_user=False, by_api_key=False
    )
    web = [
        line
        for page in api.fetch_usage("web_search_calls", T0, END, "1d", web_group)
        for line in page
    ]
    assert [(w.start, dict(w.dims)["context_level"], w.values) for w in web] == [
        (T0, "high", (9.0, 18.0)),
        (T0, "low", (4.0, 8.0)),
        (END - DAY, "high", (9.0, 18.0)),
        (END - DAY, "low", (4.0, 8.0)),
    ]
    assert web[0].fields == ("num_model_requests", "num_requests")
    sent = org.requests_to("/organization/usage/web_search_calls")
    assert sent[0].values("group_by") == ["project_id", "model", "context_level"]
    assert (sent[0].param("bucket_width"), sent[0].param("limit")) == ("1d", "31")
    assert sent[0].param("end_time") is None  # up to the API's now: 01:00 today
    files_group = ["project_id"]
    files = [
        line
        for page in api.fetch_usage("file_search_calls", T0, END, "1h", files_group)
        for line in page
    ]
    assert [(f.start, dict(f.dims)["project_id"], f.values) for f in files] == [
        (T0, "proj_b", (7.0,)),
        (END - DAY, "proj_b", (8.0,)),  # the hour before now: both records
    ]
    sent = org.requests_to("/organization/usage/file_search_calls")
    assert {r.param("limit") for r in sent} == {"168"}
    assert {r.param("bucket_width") for r in sent} == {"1h"}
    assert all(r.values("group_by") == ["project_id"] for r in sent)


_BAD_PROJECTS: list[tuple[str, Fault, str]] = [
    (
        "not-json",
        Fault.malformed(),
        "GET /organization/projects: the answer is not valid JSON",
    ),
    (
        "data-string",
        Fault.wrong_shape(),
        "GET /organization/projects.data: expected an array, got str",
    ),
    (
        "has-more-missing",
        Fault.wrong_shape({"object": "list", "data": []}),
        "GET /organization/projects.has_more: missing",
    ),
    (
        "id-missing",
        Fault.wrong_shape(
            {"object": "list", "data": [{"name": "x"}], "has_more": False}
        ),
        "GET /organization/projects.data[0].id: missing",
    ),
    (
        "id-number",
        Fault.wrong_shape({"object": "list", "data": [{"id": 5}], "has_more": False}),
        "GET /organization/projects.data[0].id: expected a non-empty string",
    ),
    (
        "name-number",
        Fault.wrong_shape(
            {"object": "list", "data": [{"id": "p", "name": 5}], "has_more": False}
        ),
        "GET /organization/projects.data[0].name: expected a string or null",
    ),
    (
        "more-on-empty",
        Fault.wrong_shape({"object": "list", "data": [], "has_more": True}),
        "GET /organization/projects: has_more on an empty page",
    ),
]


@pytest.mark.parametrize(
    ("fault", "message"),
    [pytest.param(f, m, id=i) for i, f, m in _BAD_PROJECTS],
)
def test_projects_bad_answer(
    org: FakeOpenAI, session: requests.Session, fault: Fault, message: str
) -> None:
    """A project list of the wrong shape raises BadResponse naming the field."""
    org.inject(fault, path_prefix=PROJECTS)
    with pytest.raises(BadResponse) as info:
        _client(org, session).api.fetch_projects()
    assert str(info.value).startswith(message), str(info.value)
    assert len(org.requests_to(PROJECTS)) == 1


def test_projects_last_id_repeats(org: FakeOpenAI, session: requests.Session) -> None:
    """A `last_id` equal to the previous `after` is a bad answer, not a loop."""
    page = {
        "object": "list",
        "data": [{"id": "proj_1", "name": "a"}],
        "last_id": "proj_1",
        "has_more": True,
    }
    org.inject(Fault.wrong_shape(page), path_prefix=PROJECTS, times=2)
    with pytest.raises(BadResponse, match=r"last_id: repeats 'proj_1'"):
        _client(org, session).api.fetch_projects()


# ------------------------------------------------------------------ HTTP failures


@pytest.mark.parametrize("retry_after", [1, 3, 20])
def test_429_waits_retry_after(
    org: FakeOpenAI, session: requests.Session, retry_after: int
) -> None:
    """A 429 is retried after at least its Retry-After, with identical parameters."""
    _fill_costs(org)
    org.inject(Fault.rate_limited(retry_after), path_prefix=COSTS)
    client = _client(org, session)
    assert _same(_costs(client), _expected(org))
    assert len(client.sleeps) == 1
    assert client.sleeps[0] >= retry_after
    sent = org.requests_to(COSTS)
    assert len(sent) == 5
    assert sent[0].query == sent[1].query
    assert client.counts == [("costs", "429")] + [("costs", "200")] * 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retried(org: FakeOpenAI, session: requests.Session, status: int) -> None:
    """Server errors are retried until the page arrives."""
    _fill_costs(org)
    org.inject(Fault.server_error(status), path_prefix=COSTS, times=2)
    client = _client(org, session)
    assert _same(_costs(client), _expected(org))
    assert len(client.sleeps) == 2
    assert client.counts == [("costs", str(status))] * 2 + [("costs", "200")] * 4


def test_retry_mid_pagination_repeats_the_cursor(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A page retried after a 500 repeats its query and cursor; the result is whole."""
    _fill_costs(org)
    client = _client(org, session)
    pages = client.api.fetch_costs(T0, END)
    got = [*next(pages)]  # page 1
    org.inject(Fault.server_error(500), path_prefix=COSTS)
    got += [line for page in pages for line in page]
    assert _same(got, _expected(org))
    sent = org.requests_to(COSTS)
    assert sent[1].query == sent[2].query
    assert sent[1].param("page") is not None
    assert len(client.sleeps) == 1


def test_5xx_gives_up_after_max_attempts(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A server that keeps failing gives Transient after the attempts run out."""
    org.inject(Fault.server_error(503), path_prefix=COSTS, times=10)
    client = _client(org, session, max_attempts=3)
    with pytest.raises(Transient, match=r"^GET /organization/costs: HTTP 503$"):
        _costs(client, T0, T0 + DAY)
    assert len(org.requests_to(COSTS)) == 3
    assert len(client.sleeps) == 2


def test_429_beyond_budget_gives_up(org: FakeOpenAI, session: requests.Session) -> None:
    """A Retry-After longer than the retry budget ends the call without waiting."""
    org.inject(Fault.rate_limited(120), path_prefix=COSTS)
    client = _client(org, session, budget=60.0)
    with pytest.raises(Transient) as info:
        _costs(client, T0, T0 + DAY)
    assert info.value.retry_after == 120.0
    assert client.sleeps == []


@pytest.mark.parametrize(
    "fault", [Fault.unauthorized(), Fault(status=403)], ids=["401", "403"]
)
def test_auth_rejected_without_retry(
    org: FakeOpenAI, session: requests.Session, fault: Fault
) -> None:
    """401 and 403 raise AuthRejected at once, each naming the URL and what to do;
    the message never holds the key."""
    org.inject(fault, path_prefix=PROJECTS)
    client = _client(org, session)
    with pytest.raises(AuthRejected) as info:
        client.api.fetch_projects()
    hint = {
        401: "check OPENAI_ADMIN_KEY: it must be an admin key (sk-admin-...) of this "
        "organization, not revoked",
        403: "the key lacks access: use an admin key of an organization owner",
    }[fault.status]
    assert str(info.value) == (
        f"GET /organization/projects: admin key rejected (HTTP {fault.status}) by "
        f"{org.base_url}/organization/projects; {hint}"
    )
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert len(org.requests_to(PROJECTS)) == 1
    assert client.sleeps == []
    assert client.counts == [("projects", str(fault.status))]


def test_wrong_key_rejected(org: FakeOpenAI, session: requests.Session) -> None:
    """A key the server does not know gives AuthRejected that names neither key."""
    wrong = "sk-admin-WRONG-0000000000"
    client = _client(org, session, key=wrong)
    with pytest.raises(AuthRejected) as info:
        _costs(client, T0, T0 + DAY)
    assert wrong not in str(info.value) and KEY not in str(info.value)
    assert "sk-admin-" not in str(info.value).replace("(sk-admin-...)", "")
    assert len(org.requests_to(COSTS)) == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "GET /organization/costs: HTTP 400: Injected fault: HTTP 400."),
        (404, "GET /organization/costs: HTTP 404: Injected fault: HTTP 404."),
        (409, "GET /organization/costs: HTTP 409: Injected fault: HTTP 409."),
        (422, "GET /organization/costs: HTTP 422: Injected fault: HTTP 422."),
    ],
)
def test_request_rejected_without_retry(
    org: FakeOpenAI, session: requests.Session, status: int, message: str
) -> None:
    """Other 4xx answers raise RequestRejected with the API's message, no retry."""
    org.inject(Fault(status=status), path_prefix=COSTS)
    client = _client(org, session)
    with pytest.raises(RequestRejected) as info:
        _costs(client, T0, T0 + DAY)
    assert str(info.value) == message
    assert len(org.requests_to(COSTS)) == 1
    assert client.sleeps == []


def test_wrong_path_is_404(org: FakeOpenAI, session: requests.Session) -> None:
    """A base URL without the API root gives RequestRejected from a real 404."""
    client = _client(org, session, base_url=org.base_url.removesuffix("/v1") + "/v2/")
    with pytest.raises(
        RequestRejected, match=r"^GET /organization/projects: HTTP 404: Invalid URL"
    ):
        client.api.fetch_projects()
    assert client.sleeps == []


def test_rejected_error_body_is_trimmed(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A long multi-line error message is logged on one line, at most 200 chars."""
    text = "bad  request\n" * 100
    body = json.dumps({"error": {"message": text, "type": "x"}}).encode()
    org.inject(Fault(status=400, body=body), path_prefix=COSTS)
    with pytest.raises(RequestRejected) as info:
        _costs(_client(org, session), T0, T0 + DAY)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("GET /organization/costs: HTTP 400: bad request bad")
    assert len(message) <= len("GET /organization/costs: HTTP 400: ") + 200


def test_error_body_not_json(org: FakeOpenAI, session: requests.Session) -> None:
    """A 4xx with a body that is not an ErrorResponse still gives a clean message."""
    org.inject(
        Fault(status=400, body=b"<html>nope</html>", content_type="text/html"),
        path_prefix=COSTS,
    )
    with pytest.raises(RequestRejected, match=r"^GET /organization/costs: HTTP 400$"):
        _costs(_client(org, session), T0, T0 + DAY)


def test_hang_past_read_timeout_is_transient(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """A server that hangs past the read timeout gives Transient, counted as error."""
    org.inject(Fault.hang(5.0), path_prefix=PROJECTS, times=2)
    client = _client(
        org, session, timeouts=Timeouts(connect=1.0, read=0.3), max_attempts=2
    )
    with pytest.raises(
        Transient, match=r"^GET /organization/projects: no answer within 0.3s$"
    ):
        client.api.fetch_projects()
    assert client.counts == [("projects", "error")] * 2
    assert len(client.sleeps) == 1


def test_hang_then_answer_is_retried(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """After one timed-out request the retry gets the page."""
    org.add_project("proj_a", "A")
    org.inject(Fault.hang(5.0), path_prefix=PROJECTS)
    client = _client(org, session, timeouts=Timeouts(connect=1.0, read=0.3))
    assert client.api.fetch_projects() == [Project("proj_a", "A")]
    assert client.counts == [("projects", "error"), ("projects", "200")]


def test_connection_refused_is_transient(session: requests.Session) -> None:
    """An API that is not there gives Transient after the retries."""
    with FakeOpenAI(KEY) as org:
        base_url = org.base_url
    stop = threading.Event()
    sleeps: list[float] = []
    api = AdminApi(
        session,
        base_url,
        Secret(KEY),
        timeouts=Timeouts(1.0, 1.0),
        retrying=lambda: retry_policy(60, stop, sleep=sleeps.append, max_attempts=2),
        stop=stop,
    )
    with pytest.raises(Transient) as info:
        api.fetch_projects()
    assert str(info.value) == (
        f"GET /organization/projects: cannot connect (connection refused) to "
        f"{base_url}/organization/projects; check that the server runs and the "
        "URL's host and port"
    )
    assert len(sleeps) == 1


def test_stop_set_sends_nothing(org: FakeOpenAI, session: requests.Session) -> None:
    """With the stop Event set, a fetch sends no request."""
    stop = threading.Event()
    stop.set()
    api = AdminApi(
        session,
        org.base_url,
        Secret(KEY),
        timeouts=Timeouts(1.0, 1.0),
        retrying=lambda: retry_policy(60, stop, sleep=lambda s: None),
        stop=stop,
    )
    with pytest.raises(Exception, match="stop requested"):
        api.fetch_projects()
    assert org.requests == []


# ------------------------------------------------------------ headers and secrets


def test_key_only_in_authorization_header(
    org: FakeOpenAI, session: requests.Session
) -> None:
    """Requests send `Authorization: Bearer <key>`; the key is never in the URL."""
    _fill_costs(org, days=4)
    org.add_project("proj_a", "A")
    client = _client(org, session)
    client.api.fetch_projects()
    _costs(client, T0, T0 + 4 * DAY)
    assert len(org.requests) >= 3
    for request in org.requests:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["user-agent"] == USER_AGENT
        assert request.headers["accept"] == "application/json"
        assert request.method == "GET"
        assert KEY not in request.path
        assert all(KEY not in k and KEY not in v for k, v in request.query)
    assert KEY not in repr(client.api.__dict__)


# ---------------------------------------------------------------- pure parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (0, 0.0),
        (1.25, 1.25),
        (-0.5, -0.5),
        (10**20, 1e20),
        ("12.50", 12.5),
        ("0", 0.0),
        (" 3 ", 3.0),
        ("-2.5", -2.5),
        ("1e-3", 0.001),
        ("-2.5E2", -250.0),
        ("0.30000000000000004", 0.30000000000000004),
    ],
)
def test_parse_amount_value(value: Any, expected: float) -> None:
    """JSON numbers and decimal strings are accepted as floats."""
    assert parse_amount_value(value, "where") == expected


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        "abc",
        "",
        " ",
        "1.",
        ".5",
        "+1",
        "0x10",
        "1,5",
        "12.50 usd",
        "nan",
        "inf",
        "Infinity",
        float("nan"),
        float("inf"),
        float("-inf"),
        "1e400",
        10**400,
        [1],
        {"value": 1},
    ],
    ids=repr,
)
def test_parse_amount_value_rejects(value: Any) -> None:
    """Anything but a finite number or decimal string is rejected, field named."""
    with pytest.raises(
        BadResponse,
        match=r"^x\.amount\.value: expected a number or a decimal "
        r"string, got ",
    ):
        parse_amount_value(value, "x.amount.value")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": [], "has_more": False}, ([], False, None)),
        ({"data": [1], "has_more": False, "next_page": None}, ([1], False, None)),
        ({"data": [], "has_more": True, "next_page": "p"}, ([], True, "p")),
        (
            {"object": "page", "data": [{}], "has_more": False, "next_page": "p"},
            ([{}], False, "p"),
        ),
    ],
)
def test_parse_page(body: Any, expected: tuple[list[Any], bool, str | None]) -> None:
    """A page gives its buckets, `has_more` and `next_page`."""
    assert parse_page(body, "GET /c") == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "GET /c: expected an object, got list"),
        (None, "GET /c: expected an object, got NoneType"),
        ({"has_more": False}, "GET /c.data: missing"),
        ({"data": {}, "has_more": False}, "GET /c.data: expected an array, got dict"),
        ({"data": []}, "GET /c.has_more: missing"),
        ({"data": [], "has_more": "true"}, "GET /c.has_more: expected true or false"),
        ({"data": [], "has_more": 1}, "GET /c.has_more: expected true or false"),
        ({"data": [], "has_more": None}, "GET /c.has_more: expected true or false"),
        (
            {"data": [], "has_more": False, "next_page": 5},
            "GET /c.next_page: expected a string or null",
        ),
        (
            {"data": [], "has_more": True},
            "GET /c.next_page: missing although has_more is true",
        ),
        (
            {"data": [], "has_more": True, "next_page": ""},
            "GET /c.next_page: missing although has_more is true",
        ),
    ],
)
def test_parse_page_rejects(body: Any, message: str) -> None:
    """A page of the wrong shape names the field."""
    with pytest.raises(BadResponse) as info:
        parse_page(body, "GET /c")
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("bucket", "lines"),
    [
        (_bucket(), [CostLine(T0, "proj_a", "gpt-4o, input", "usd", 1.5)]),
        (_bucket(results=[]), []),
        (_bucket(results=[_result(amount=None)]), []),
        (
            _bucket(results=[_result(project_id=None, line_item=None)]),
            [CostLine(T0, "", "", "usd", 1.5)],
        ),
        (
            _bucket(results=[{**_result(), "project_id": None, "line_item": None}]),
            [CostLine(T0, "", "", "usd", 1.5)],
        ),
        (
            _bucket(
                results=[
                    _result(amount={"value": "12.50", "currency": "eur"}),
                    _result(amount={"value": 0, "currency": "usd"}),
                ]
            ),
            [
                CostLine(T0, "proj_a", "gpt-4o, input", "eur", 12.5),
                CostLine(T0, "proj_a", "gpt-4o, input", "usd", 0.0),
            ],
        ),
        ({"start_time": 0, "results": []}, []),
    ],
)
def test_parse_cost_bucket(bucket: Any, lines: list[CostLine]) -> None:
    """A bucket gives its day and one line per result with an amount."""
    assert parse_cost_bucket(bucket, "w") == (bucket["start_time"], lines)


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        ("x", "w: expected an object, got str"),
        ({"results": []}, "w.start_time: missing"),
        ({"start_time": "0", "results": []}, "w.start_time: expected an integer"),
        ({"start_time": True, "results": []}, "w.start_time: expected an integer"),
        ({"start_time": 1.0 * T0, "results": []}, "w.start_time: expected an integer"),
        (
            {"start_time": T0 + 1, "results": []},
            f"w.start_time: {T0 + 1} is not 00:00 UTC",
        ),
        ({"start_time": T0}, "w.results: missing"),
        ({"start_time": T0, "results": {}}, "w.results: expected an array"),
        (_bucket(results=[5]), "w.results[0]: expected an object, got int"),
        (
            _bucket(results=[_result(object="bucket")]),
            "w.results[0].object: expected organization.costs.result, got 'bucket'",
        ),
        (
            _bucket(results=[_result(amount=[1])]),
            "w.results[0].amount: expected an object, got list",
        ),
        (
            _bucket(results=[_result(amount={"currency": "usd"})]),
            "w.results[0].amount.value: missing",
        ),
        (
            _bucket(results=[_result(amount={"value": "1,5", "currency": "usd"})]),
            "w.results[0].amount.value: expected a number or a decimal string",
        ),
        (
            _bucket(results=[_result(amount={"value": 1})]),
            "w.results[0].amount.currency: missing",
        ),
        (
            _bucket(results=[_result(amount={"value": 1, "currency": ""})]),
            "w.results[0].amount.currency: expected a currency code",
        ),
        (
            _bucket(results=[_result(amount={"value": 1, "currency": 5})]),
            "w.results[0].amount.currency: expected a currency code",
        ),
        (
            _bucket(results=[_result(), _result(project_id=5)]),
            "w.results[1].project_id: expected a string or null, got 5",
        ),
        (
            _bucket(results=[_result(line_item=["a"])]),
            "w.results[0].line_item: expected a string or null",
        ),
    ],
)
def test_parse_cost_bucket_rejects(bucket: Any, message: str) -> None:
    """A bucket of the wrong shape names the field."""
    with pytest.raises(BadResponse) as info:
        parse_cost_bucket(bucket, "w")
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": [], "has_more": False}, ([], False)),
        (
            {
                "object": "list",
                "has_more": True,
                "data": [
                    {
                        "id": "proj_a",
                        "name": "A",
                        "archived_at": None,
                        "status": "active",
                    },
                    {"id": "proj_b", "name": None, "archived_at": 1_700_000_000},
                    {"id": "proj_c", "name": "C", "status": "archived"},
                    {"id": "proj_d"},
                ],
            },
            (
                [
                    Project("proj_a", "A", False),
                    Project("proj_b", None, True),
                    Project("proj_c", "C", True),
                    Project("proj_d", None, False),
                ],
                True,
            ),
        ),
    ],
)
def test_parse_projects_page(body: Any, expected: tuple[list[Project], bool]) -> None:
    """A project page gives projects, archived flag from archived_at or status."""
    assert parse_projects_page(body, "GET /p") == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x", "GET /p: expected an object, got str"),
        ({"has_more": False}, "GET /p.data: missing"),
        ({"data": None, "has_more": False}, "GET /p.data: expected an array"),
        ({"data": []}, "GET /p.has_more: missing"),
        ({"data": [], "has_more": "no"}, "GET /p.has_more: expected true or false"),
        (
            {"data": [7], "has_more": False},
            "GET /p.data[0]: expected an object, got int",
        ),
        ({"data": [{}], "has_more": False}, "GET /p.data[0].id: missing"),
        (
            {"data": [{"id": ""}], "has_more": False},
            "GET /p.data[0].id: expected a non-empty string",
        ),
        (
            {"data": [{"id": "a"}, {"id": 3}], "has_more": False},
            "GET /p.data[1].id: expected a non-empty string",
        ),
        (
            {"data": [{"id": "a", "name": 3}], "has_more": False},
            "GET /p.data[0].name: expected a string or null",
        ),
    ],
)
def test_parse_projects_page_rejects(body: Any, message: str) -> None:
    """A project page of the wrong shape names the field."""
    with pytest.raises(BadResponse) as info:
        parse_projects_page(body, "GET /p")
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("bucket", "path"),
    [
        ("x", None),
        ({"results": []}, None),
        ({"start_time": T0 + 1, "results": []}, None),
        ({"start_time": T0, "results": {}}, None),
        (_bucket(results=[5]), "results[0]"),
        (
            _bucket(
                results=[_result(), _result(amount={"value": "x", "currency": "usd"})]
            ),
            "results[1].amount.value",
        ),
        (_bucket(results=[_result(line_item=["a"])]), "results[0].line_item"),
        (_bucket(results=[_result(object=None)]), "results[0].object"),
    ],
)
def test_parse_cost_bucket_tells_a_bad_result_from_a_bad_envelope(
    bucket: Any, path: str | None
) -> None:
    """A bad result raises BadResult with the day and its path in the bucket; a bad
    envelope raises a BadField that no bucket can be blamed for."""
    with pytest.raises(BadResponse) as info:
        parse_cost_bucket(bucket, "w")
    error = info.value
    if path is None:
        assert isinstance(error, BadField) and not isinstance(error, BadResult)
        assert str(error) == f"{error.path}: {error.reason}"
    else:
        assert isinstance(error, BadResult)
        assert (error.start, error.path) == (T0, path)
        assert str(error) == f"w.{path}: {error.reason}"


@pytest.mark.parametrize(
    ("bucket", "path"),
    [
        ({"start_time": T0 + 60, "results": []}, None),
        ({"start_time": T0}, None),
        ({"start_time": T0, "results": [{"object": "x"}]}, "results[0].object"),
        (
            {"start_time": T0, "results": [_usage_result(input_tokens=math.inf)]},
            "results[0].input_tokens",
        ),
        (
            {"start_time": T0, "results": [_usage_result(), _usage_result(model=3)]},
            "results[1].model",
        ),
    ],
)
def test_parse_usage_bucket_tells_a_bad_result_from_a_bad_envelope(
    bucket: Any, path: str | None
) -> None:
    """The usage parser draws the same line as the costs parser."""
    with pytest.raises(BadResponse) as info:
        parse_usage_bucket(bucket, "w", "completions", 3600)
    error = info.value
    if path is None:
        assert not isinstance(error, BadResult)
    else:
        assert isinstance(error, BadResult)
        assert (error.start, error.path) == (T0, path)


@pytest.mark.parametrize("how", ["costs", "cost parts", "usage", "usage parts"])
def test_a_bucket_handed_on_is_held_by_the_caller_alone(
    org: FakeOpenAI, session: requests.Session, how: str
) -> None:
    """While the caller holds a bucket (a day landing), the client's suspended
    generators hold no reference to its lines: a large organization's day of lines
    is tens of MiB, which must go as soon as the caller has added them."""
    _fill_costs(org)
    usage_buckets = [
        {
            "object": "bucket",
            "start_time": T0 + k * DAY,
            "end_time": T0 + (k + 1) * DAY,
            "results": [_usage_result(model=m) for m in ("gpt-4o", "gpt-4o-mini")],
        }
        for k in range(3)
    ]
    org.inject(Fault.wrong_shape(_page(*usage_buckets)), path_prefix=USAGE)
    api = _client(org, session).api
    group_by = COMPLETIONS_GROUP_BY
    handed: Iterator[Any]
    if how == "costs":
        handed = api.fetch_costs(T0, END, [])
    elif how == "cost parts":
        handed = api.fetch_cost_parts(T0, END, [], set())
    elif how == "usage":
        handed = api.fetch_usage("completions", T0, END, "1d", group_by, [])
    else:
        handed = api.fetch_usage_parts(
            "completions", T0, END, "1d", group_by, [], set()
        )
    first: Any = next(handed)
    lines: list[Any] = first.lines if how.endswith("parts") else first
    del first
    assert len(lines) >= 2
    assert sys.getrefcount(lines) == 2  # `lines` here, and the call's argument
    assert list(handed)  # the next buckets come as ever
