"""Test the fake OpenAI Admin API itself: shapes, pagination, cursors, faults.

Every kind of body the fake serves is validated against the schemas of OpenAI's
official OpenAPI description (JSON Schema 2020-12), so that tests built on the fake test
the client against the real contract. The schemas are the structure-only copy in
`tests/data/` (`scripts/vendor-openapi.py` writes it; its `x-source` names the commit).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fake_openai import USAGE_KINDS, FakeOpenAI, Fault

DAY = 86_400
T0 = 1_730_419_200  # 2024-11-01 00:00 UTC, the day of the spec's examples
NOW = T0 + 10 * DAY + 3600  # 01:00 on the 11th day: 11 daily buckets from T0
TIMEOUT = 5.0
_SPEC_URI = "urn:openai-admin-api:structure"
SPEC = Path(__file__).resolve().parent / "data" / "openai-admin-api.structure.json"
"""The structure of OpenAI's Admin API description, vendored (no prose, no examples)."""


@pytest.fixture(name="schemas", scope="session")
def _schemas() -> dict[str, Draft202012Validator]:
    """Return a validator per component schema, with `$ref`s resolved in the copy."""
    doc = json.loads(SPEC.read_text(encoding="utf-8"))
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
    return {
        name: Draft202012Validator(
            {"$ref": f"{_SPEC_URI}#/components/schemas/{name}"}, registry=registry
        )
        for name in doc["components"]["schemas"]
    }


@pytest.fixture(name="fake")
def _fake() -> Iterator[FakeOpenAI]:
    """Run a fake with a fixed clock and pages of three buckets."""
    with FakeOpenAI(now=lambda: NOW) as fake:
        yield fake


@pytest.fixture(name="http")
def _http(fake: FakeOpenAI) -> Iterator[requests.Session]:
    """Return a session that sends the fake's admin key."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {fake.admin_key}"
        yield session


def _get(
    http: requests.Session, fake: FakeOpenAI, path: str, params: Any = None
) -> requests.Response:
    """GET `path` under the fake's base URL."""
    return http.get(fake.base_url + path, params=params, timeout=TIMEOUT)


def _walk(
    http: requests.Session, fake: FakeOpenAI, path: str, params: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """Follow `next_page` with the same parameters and return every page."""
    pages: list[dict[str, Any]] = []
    page: str | None = None
    for _ in range(100):
        resp = _get(http, fake, path, [*params, *([("page", page)] if page else [])])
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
        page = pages[-1]["next_page"]
        if not pages[-1]["has_more"]:
            return pages
    raise AssertionError("pagination did not end")


def fake_key(http: requests.Session) -> str:
    """Return the admin key the session sends."""
    return str(http.headers["Authorization"]).removeprefix("Bearer ")


def _assert_valid(validator: Draft202012Validator, doc: object) -> None:
    """Fail with every schema error of `doc`, not just the first."""
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)
    ]
    assert not errors, errors


def _assert_error(
    schemas: dict[str, Draft202012Validator],
    resp: requests.Response,
    status: int,
    param: str | None = None,
) -> dict[str, Any]:
    """Check an `ErrorResponse` answer with `status` and `param`; return the error."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    _assert_valid(schemas["ErrorResponse"], body)
    if param is not None:
        assert body["error"]["param"] == param
    error: dict[str, Any] = body["error"]
    return error


def _fill_usage(fake: FakeOpenAI, kind: str, start: int) -> None:
    """Store two records of `kind` that differ in every dimension."""
    dims = USAGE_KINDS[kind].dims
    for n in (1, 2):
        fields: dict[str, object] = {d: f"{d}-{n}" for d in dims}
        if "batch" in dims:
            fields["batch"] = n == 1
        for counter in USAGE_KINDS[kind].counters:
            fields[counter] = 10 * n
        if kind == "completions":
            fields["input_cached_tokens"] = n
        fake.add_usage(kind, start + 60 * n, **fields)


# ------------------------------------------------------------------------ schemas


@pytest.mark.parametrize(
    "group_by", [[], ["project_id"], ["line_item"], ["project_id", "line_item"]]
)
def test_costs_pages_validate(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    group_by: list[str],
) -> None:
    """Every costs page is a valid UsageResponse whose results are CostsResults."""
    fake.set_cost(T0, "proj_a", "gpt-4o, input", 1.25)
    fake.set_cost(T0 + DAY, None, "web search", 0.5)
    params = [
        ("start_time", T0),
        ("limit", 180),
        *(("group_by[]", g) for g in group_by),
    ]
    pages = _walk(http, fake, "/organization/costs", params)
    results = [r for p in pages for b in p["data"] for r in b["results"]]
    assert results
    for page in pages:
        _assert_valid(schemas["UsageResponse"], page)
    for result in results:
        _assert_valid(schemas["CostsResult"], result)
        assert result["object"] == "organization.costs.result"
        assert result["quantity"] is None and result["quantity_unit"] is None
        for dim in ("project_id", "line_item", "api_key_id"):
            assert dim in result
            if dim not in group_by:
                assert result[dim] is None


@pytest.mark.parametrize("kind", sorted(USAGE_KINDS))
@pytest.mark.parametrize("grouped", [False, True])
def test_usage_pages_validate(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    kind: str,
    grouped: bool,
) -> None:
    """Every usage kind serves valid pages, its own result object, all dimensions."""
    spec = USAGE_KINDS[kind]
    _fill_usage(fake, kind, T0 + DAY)
    params: list[tuple[str, Any]] = [("start_time", T0), ("end_time", T0 + 3 * DAY)]
    if grouped:
        params += [("group_by", d) for d in spec.dims]
    resp = _get(http, fake, f"/organization/usage/{kind}", params)
    assert resp.status_code == 200, resp.text
    page = resp.json()
    _assert_valid(schemas["UsageResponse"], page)
    assert [b["results"] for b in page["data"]][0::2] == [[], []]
    results = page["data"][1]["results"]
    assert len(results) == (2 if grouped else 1)
    schema_name = "Usage" + "".join(w.title() for w in kind.split("_")) + "Result"
    for result in results:
        _assert_valid(schemas[schema_name], result)
        assert result["object"] == spec.object
        assert set(spec.dims) <= set(result)
        assert all((result[d] is None) != grouped for d in spec.dims)


def test_project_documents_validate(
    fake: FakeOpenAI, http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """Project lists and single projects validate and carry every spec field."""
    fake.add_project("proj_a", "Alpha")
    fake.add_project("proj_b", None, archived=True, created_at=1_710_000_000)
    listing = _get(http, fake, "/organization/projects", {"include_archived": "true"})
    _assert_valid(schemas["ProjectListResponse"], listing.json())
    one = _get(http, fake, "/organization/projects/proj_b").json()
    _assert_valid(schemas["Project"], one)
    assert one == {
        "id": "proj_b",
        "object": "organization.project",
        "name": None,
        "created_at": 1_710_000_000,
        "archived_at": 1_710_000_000 + DAY,
        "status": "archived",
        "external_key_id": None,
        "residency": "GLOBAL",
    }
    assert listing.json()["data"][0]["status"] == "active"


def test_unknown_project_is_404(
    fake: FakeOpenAI, http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """Retrieving a project that does not exist answers 404 ErrorResponse."""
    _assert_error(schemas, _get(http, fake, "/organization/projects/proj_x"), 404)


@pytest.mark.parametrize(
    "path", ["/organization/nothing", "/organization/usage/file_searches", "/x"]
)
def test_unknown_path_is_404(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    path: str,
) -> None:
    """Unknown paths answer 404 with an ErrorResponse."""
    _assert_error(schemas, _get(http, fake, path), 404)


def test_post_is_refused(
    fake: FakeOpenAI, http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """Methods other than GET answer 405 and are still recorded."""
    resp = http.post(fake.base_url + "/organization/projects", json={}, timeout=TIMEOUT)
    _assert_error(schemas, resp, 405)
    assert [r.method for r in fake.requests_to("/organization/projects")] == ["POST"]


def test_amount_as_string(
    fake: FakeOpenAI, http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """With amount_as_string the value is a decimal string, which the spec rejects."""
    fake.set_cost(T0, "proj_a", "input", 12.5)
    fake.amount_as_string = True
    page = _get(http, fake, "/organization/costs", {"start_time": T0}).json()
    result = page["data"][0]["results"][0]
    assert result["amount"] == {"value": "12.5", "currency": "usd"}
    errors = list(schemas["CostsResult"].iter_errors(result))
    assert [list(e.absolute_path) for e in errors] == [["amount", "value"]]


# --------------------------------------------------------------------- aggregation


def test_costs_aggregate_per_group_and_currency(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Costs are summed over what is not grouped by, one result per currency."""
    fake.set_cost(T0, "proj_a", "input", 1.5)
    fake.set_cost(T0, "proj_a", "output", 2.25)
    fake.set_cost(T0, "proj_b", "input", 4.0)
    fake.set_cost(T0, "proj_b", "input", 0.25)  # replaces 4.0
    fake.set_cost(T0, "proj_b", "input", 3.0, currency="eur")
    assert fake.costs()[(T0, "proj_b", "input", "usd")] == 0.25

    def results(params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Return (project, item, value, currency) of the first bucket."""
        page = _get(http, fake, "/organization/costs", {"start_time": T0, **params})
        return [
            (
                r["project_id"],
                r["line_item"],
                r["amount"]["value"],
                r["amount"]["currency"],
            )
            for r in page.json()["data"][0]["results"]
        ]

    assert results({}) == [(None, None, 3.0, "eur"), (None, None, 4.0, "usd")]
    assert results({"group_by": "project_id"}) == [
        ("proj_a", None, 3.75, "usd"),
        ("proj_b", None, 3.0, "eur"),
        ("proj_b", None, 0.25, "usd"),
    ]
    assert results({"group_by": "line_item", "project_ids[]": "proj_a"}) == [
        (None, "input", 1.5, "usd"),
        (None, "output", 2.25, "usd"),
    ]


def test_usage_counters_sum_and_levels_take_max(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Counters add up within a bucket while vector store bytes are a level."""
    for minute, tokens in ((0, 5), (1, 7)):
        fake.add_usage(
            "completions",
            T0 + 60 * minute,
            project_id="p",
            model="m",
            input_tokens=tokens,
            input_audio_tokens=1,
            num_model_requests=1,
        )
    for minute, size in ((0, 100), (30, 300), (59, 200)):
        fake.add_usage(
            "vector_stores", T0 + 60 * minute, project_id="p", usage_bytes=size
        )
    fake.add_usage("vector_stores", T0, project_id="q", usage_bytes=5)
    params = {"start_time": T0, "end_time": T0 + 3600, "bucket_width": "1h"}
    comp = _get(http, fake, "/organization/usage/completions", params).json()
    assert comp["data"][0]["results"] == [
        {
            "object": "organization.usage.completions.result",
            "input_tokens": 12,
            "output_tokens": 0,
            "num_model_requests": 2,
            "input_audio_tokens": 2,
            "project_id": None,
            "user_id": None,
            "api_key_id": None,
            "model": None,
            "batch": None,
            "service_tier": None,
        }
    ]
    grouped = _get(
        http,
        fake,
        "/organization/usage/vector_stores",
        {**params, "group_by": "project_id"},
    ).json()
    assert [
        (r["project_id"], r["usage_bytes"]) for r in grouped["data"][0]["results"]
    ] == [("p", 300), ("q", 5)]


def test_usage_filters(fake: FakeOpenAI, http: requests.Session) -> None:
    """project_ids, models and batch filter the records that are aggregated."""
    fake.add_usage(
        "completions", T0, project_id="p", model="a", batch=True, input_tokens=1
    )
    fake.add_usage(
        "completions", T0, project_id="q", model="b", batch=False, input_tokens=10
    )

    def tokens(params: dict[str, str]) -> int:
        """Return the input tokens of the first bucket."""
        page = _get(
            http,
            fake,
            "/organization/usage/completions",
            {"start_time": str(T0), "limit": "1", **params},
        ).json()
        return sum(r["input_tokens"] for r in page["data"][0]["results"])

    assert tokens({}) == 11
    assert tokens({"project_ids": "q"}) == 10
    assert tokens({"models[]": "a"}) == 1
    assert tokens({"batch": "false"}) == 10


def test_fake_serves_every_usage_path_of_the_description() -> None:
    """The fake has exactly the description's usage endpoints, each with the result
    object its schema names (`web_searches`, not `web_search_calls`)."""
    doc = json.loads(SPEC.read_text(encoding="utf-8"))
    prefix = "/organization/usage/"
    kinds = {p.removeprefix(prefix) for p in doc["paths"] if p.startswith(prefix)}
    assert set(USAGE_KINDS) == kinds
    schemas = doc["components"]["schemas"]
    for kind, spec in USAGE_KINDS.items():
        name = "Usage" + "".join(w.title() for w in kind.split("_")) + "Result"
        assert schemas[name]["properties"]["object"]["enum"] == [spec.object]
        assert set(spec.dims) <= set(schemas[name]["properties"])


def test_tool_call_usage_groups_and_filters(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Web search calls group by model and context level; file search calls filter
    by vector store; every other dimension is null."""
    for level, calls in (("low", 2), ("high", 5), ("high", 1)):
        fake.add_usage(
            "web_search_calls",
            T0,
            project_id="p",
            model="gpt-4o",
            context_level=level,
            num_model_requests=calls,
            num_requests=calls * 3,
        )
    fake.add_usage("file_search_calls", T0, project_id="p", vector_store_id="vs_1")
    fake.add_usage(
        "file_search_calls", T0, project_id="p", vector_store_id="vs_2", num_requests=4
    )
    params: dict[str, Any] = {"start_time": T0, "limit": 1}
    web = _get(
        http,
        fake,
        "/organization/usage/web_search_calls",
        {**params, "group_by[]": ["project_id", "model", "context_level"]},
    ).json()
    assert [
        (r["context_level"], r["num_model_requests"], r["num_requests"], r["user_id"])
        for r in web["data"][0]["results"]
    ] == [("high", 6, 18, None), ("low", 2, 6, None)]
    files = _get(
        http,
        fake,
        "/organization/usage/file_search_calls",
        {**params, "group_by": "project_id", "vector_store_ids": "vs_2"},
    ).json()
    assert files["data"][0]["results"] == [
        {
            "object": "organization.usage.file_searches.result",
            "num_requests": 4,
            "project_id": "p",
            "user_id": None,
            "api_key_id": None,
            "vector_store_id": None,
        }
    ]


@pytest.mark.parametrize(("width", "step"), [("1d", DAY), ("1h", 3600)])
def test_usage_bucket_holding_now_ends_at_now(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    width: str,
    step: int,
) -> None:
    """As live answers do: with a midnight-aligned start, the last usage bucket of a
    window that reaches now ends at now, and still holds its whole bucket's records;
    costs and buckets wholly in the past keep their full width."""
    now = NOW + 1800  # 01:30 on the 11th day
    with FakeOpenAI(fake.admin_key, page_size=10_000, now=lambda: now) as live:
        live.add_usage("embeddings", now // step * step, input_tokens=7)
        live.add_usage("embeddings", now // 60 * 60, input_tokens=1)  # this minute
        start = NOW // DAY * DAY - 2 * step
        page = _get(
            http,
            live,
            "/organization/usage/embeddings",
            {"start_time": start, "bucket_width": width, "limit": 31},
        ).json()
        _assert_valid(schemas["UsageResponse"], page)
        spans = [(b["start_time"], b["end_time"]) for b in page["data"]]
        last = now // step * step
        assert spans[-1] == (last, now)
        assert all(e - s == step for s, e in spans[:-1])
        assert page["data"][-1]["results"][0]["input_tokens"] == 8
        whole = _get(
            http,
            live,
            "/organization/usage/embeddings",
            {"start_time": start, "end_time": last, "bucket_width": width},
        ).json()
        assert all(b["end_time"] - b["start_time"] == step for b in whole["data"])
        costs = _get(
            http, live, "/organization/costs", {"start_time": NOW // DAY * DAY - DAY}
        ).json()
        assert len(costs["data"]) == 2
        assert all(b["end_time"] - b["start_time"] == DAY for b in costs["data"])


def test_unknown_token_fields_are_served(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """A *_tokens counter the spec does not know yet is summed and served."""
    fake.add_usage("completions", T0, input_tokens=1, output_reasoning_tokens=4)
    fake.add_usage("completions", T0 + 60, input_tokens=1, output_reasoning_tokens=5)
    page = _get(http, fake, "/organization/usage/completions", {"start_time": T0})
    assert page.json()["data"][0]["results"][0]["output_reasoning_tokens"] == 9


def test_add_usage_rejects_bad_records(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Unknown kinds, fields and types and unaligned minutes raise; clear works."""
    with pytest.raises(ValueError, match="kind"):
        fake.add_usage("file_searches", T0)
    with pytest.raises(ValueError, match="no field"):
        fake.add_usage("embeddings", T0, size="1024x1024")
    with pytest.raises(ValueError, match="minute"):
        fake.add_usage("embeddings", T0 + 1)
    with pytest.raises(TypeError):
        fake.add_usage("completions", T0, batch="true")
    with pytest.raises(TypeError):
        fake.add_usage("completions", T0, input_tokens=1.5)
    fake.add_usage("embeddings", T0, input_tokens=1)
    fake.clear_usage()
    page = _get(http, fake, "/organization/usage/embeddings", {"start_time": T0})
    assert page.json()["data"][0]["results"] == []


# ---------------------------------------------------------------------- pagination


def test_costs_pages_yield_every_bucket_once(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Walking the pages yields each day once, in order, three buckets at most."""
    fake.set_cost(T0 + 9 * DAY, "proj_a", "input", 1.0)
    pages = _walk(
        http, fake, "/organization/costs", [("start_time", T0), ("limit", 180)]
    )
    assert [len(p["data"]) for p in pages] == [3, 3, 3, 2]
    starts = [b["start_time"] for p in pages for b in p["data"]]
    assert starts == [T0 + i * DAY for i in range(11)]
    assert all(b["end_time"] == b["start_time"] + DAY for p in pages for b in p["data"])
    assert [p["has_more"] for p in pages] == [True, True, True, False]
    assert pages[-1]["next_page"] is None
    assert pages[3]["data"][0]["results"][0]["amount"]["value"] == 1.0


@pytest.mark.parametrize(("limit", "sizes"), [(2, [2, 2, 1]), (5, [3, 2])])
def test_page_holds_min_of_limit_and_page_size(
    fake: FakeOpenAI, http: requests.Session, limit: int, sizes: list[int]
) -> None:
    """A page holds min(limit, page_size) buckets."""
    params = [
        ("start_time", T0),
        ("end_time", T0 + 5 * 3600),
        ("bucket_width", "1h"),
        ("limit", limit),
    ]
    pages = _walk(http, fake, "/organization/usage/embeddings", params)
    assert [len(p["data"]) for p in pages] == sizes


def test_last_bucket_is_whole_and_starts_before_end(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Buckets start before end_time and each spans a whole width."""
    page = _get(
        http, fake, "/organization/costs", {"start_time": T0, "end_time": T0 + DAY + 1}
    ).json()
    assert [(b["start_time"], b["end_time"]) for b in page["data"]] == [
        (T0, T0 + DAY),
        (T0 + DAY, T0 + 2 * DAY),
    ]
    empty = _get(
        http, fake, "/organization/costs", {"start_time": T0, "end_time": T0}
    ).json()
    assert empty == {"object": "page", "data": [], "has_more": False, "next_page": None}


def test_end_time_defaults_to_now(fake: FakeOpenAI, http: requests.Session) -> None:
    """Without end_time, buckets run up to the fake's clock."""
    pages = _walk(http, fake, "/organization/costs", [("start_time", NOW - 2 * DAY)])
    assert [b["start_time"] for p in pages for b in p["data"]] == [
        NOW - 2 * DAY,
        NOW - DAY,
    ]


def test_large_page_size_uses_default_limits(http: requests.Session) -> None:
    """With a large page_size the default limit decides the page size per width."""
    with FakeOpenAI(fake_key(http), page_size=10_000, now=lambda: NOW) as big:
        for width, default in (("1d", 7), ("1h", 24), ("1m", 60)):
            page = _get(
                http,
                big,
                "/organization/usage/completions",
                {"start_time": T0, "bucket_width": width},
            ).json()
            assert len(page["data"]) == default
        assert (
            len(
                _get(http, big, "/organization/costs", {"start_time": T0}).json()[
                    "data"
                ]
            )
            == 7
        )


# ------------------------------------------------------------------------- cursors


def test_cursor_is_bound_to_its_query(
    fake: FakeOpenAI, http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """A cursor works with the same parameters in any order and fails with others."""
    params = [
        ("start_time", T0),
        ("group_by[]", "project_id"),
        ("group_by[]", "line_item"),
        ("limit", 180),
    ]
    first = _get(http, fake, "/organization/costs", params).json()
    cursor = first["next_page"]
    reordered = [*reversed(params), ("page", cursor)]
    again = _get(http, fake, "/organization/costs", reordered)
    assert again.status_code == 200
    assert again.json()["data"][0]["start_time"] == T0 + 3 * DAY
    changed = [*params[:-1], ("limit", 31), ("page", cursor)]
    _assert_error(
        schemas, _get(http, fake, "/organization/costs", changed), 400, "page"
    )
    missing = [*params[:-1], ("page", cursor)]
    _assert_error(
        schemas, _get(http, fake, "/organization/costs", missing), 400, "page"
    )
    other_form = [
        ("start_time", T0),
        ("group_by", "project_id,line_item"),
        ("limit", 180),
        ("page", cursor),
    ]
    resp = _get(http, fake, "/organization/costs", other_form)
    _assert_error(schemas, resp, 400, "page")
    usage = [("start_time", T0), ("page", cursor)]
    resp = _get(http, fake, "/organization/usage/completions", usage)
    _assert_error(schemas, resp, 400, "page")


@pytest.mark.parametrize("cursor", ["garbage", "page_!!!", "page_e30=", "page_"])
def test_garbage_cursor_is_400(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    cursor: str,
) -> None:
    """A cursor the fake did not issue answers 400 naming `page`."""
    resp = _get(http, fake, "/organization/costs", {"start_time": T0, "page": cursor})
    _assert_error(schemas, resp, 400, "page")


# ---------------------------------------------------------------- params and limits


@pytest.mark.parametrize(("width", "maximum"), [("1d", 31), ("1h", 168), ("1m", 1440)])
def test_usage_limit_bounds_per_width(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    width: str,
    maximum: int,
) -> None:
    """Usage limit accepts 1..max for its bucket_width and rejects the rest."""
    for limit, ok in ((1, True), (maximum, True), (maximum + 1, False), (0, False)):
        resp = _get(
            http,
            fake,
            "/organization/usage/images",
            {"start_time": T0, "bucket_width": width, "limit": limit},
        )
        if ok:
            assert resp.status_code == 200, resp.text
        else:
            _assert_error(schemas, resp, 400, "limit")


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/organization/costs", {"start_time": T0, "limit": 181}, "limit"),
        ("/organization/costs", {"start_time": T0, "limit": "x"}, "limit"),
        ("/organization/costs", {}, "start_time"),
        ("/organization/costs", {"start_time": "1.5"}, "start_time"),
        (
            "/organization/costs",
            {"start_time": T0, "bucket_width": "1h"},
            "bucket_width",
        ),
        ("/organization/costs", {"start_time": T0, "group_by": "model"}, "group_by"),
        (
            "/organization/costs",
            {"start_time": T0, "group_by[]": "user_id"},
            "group_by",
        ),
        ("/organization/costs", {"start_time": T0, "nope": "1"}, "nope"),
        (
            "/organization/costs",
            [("start_time", T0), ("limit", 2), ("limit", 3)],
            "limit",
        ),
        (
            "/organization/usage/completions",
            {"start_time": T0, "bucket_width": "1w"},
            "bucket_width",
        ),
        (
            "/organization/usage/completions",
            {"start_time": T0, "batch": "True"},
            "batch",
        ),
        (
            "/organization/usage/embeddings",
            {"start_time": T0, "group_by": "batch"},
            "group_by",
        ),
        (
            "/organization/usage/vector_stores",
            {"start_time": T0, "group_by": "model"},
            "group_by",
        ),
        (
            "/organization/usage/embeddings",
            {"start_time": T0, "batch": "true"},
            "batch",
        ),
        ("/organization/projects", {"limit": 101}, "limit"),
        ("/organization/projects", {"limit": 0}, "limit"),
        ("/organization/projects", {"include_archived": "True"}, "include_archived"),
        ("/organization/projects", {"after": "proj_missing"}, "after"),
    ],
)
def test_bad_parameters_are_400(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    path: str,
    params: Any,
    param: str,
) -> None:
    """Invalid, unknown or repeated parameters answer 400 naming the parameter."""
    _assert_error(schemas, _get(http, fake, path, params), 400, param)


@pytest.mark.parametrize(
    "path", ["/organization/costs", "/organization/usage/completions"]
)
def test_group_by_forms_agree(
    fake: FakeOpenAI, http: requests.Session, path: str
) -> None:
    """Brackets, encoded brackets, repeated keys and a comma list give one answer."""
    fake.set_cost(T0, "proj_a", "input", 1.0)
    fake.set_cost(T0, "proj_b", "output", 2.0)
    fake.add_usage("completions", T0, project_id="proj_a", model="m1", input_tokens=1)
    fake.add_usage("completions", T0, project_id="proj_b", model="m2", input_tokens=2)
    second = "line_item" if path.endswith("costs") else "model"
    base = f"{fake.base_url}{path}?start_time={T0}&"
    queries = [
        f"group_by[]=project_id&group_by[]={second}",
        f"group_by%5B%5D=project_id&group_by%5B%5D={second}",
        f"group_by=project_id&group_by={second}",
        f"group_by=project_id,{second}",
        f"group_by=project_id%2C{second}",
    ]
    bodies = [http.get(base + q, timeout=TIMEOUT).json() for q in queries]
    assert len(bodies[0]["data"][0]["results"]) == 2
    assert all(b["data"] == bodies[0]["data"] for b in bodies)
    recorded = fake.requests_to(path)
    assert [r.values("group_by") for r in recorded] == [["project_id", second]] * 5
    assert recorded[1].query[1] == ("group_by[]", "project_id")


# ------------------------------------------------------------------------ projects


def test_archived_projects_only_with_include_archived(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Archived projects are listed only with include_archived=true."""
    fake.add_project("proj_a", "Alpha")
    fake.add_project("proj_old", "Old", archived=True)
    fake.add_project("proj_c", "Gamma")

    def ids(params: dict[str, str]) -> list[str]:
        """Return the ids of the first page."""
        page = _get(http, fake, "/organization/projects", params).json()
        return [p["id"] for p in page["data"]]

    assert ids({}) == ["proj_a", "proj_c"]
    assert ids({"include_archived": "false"}) == ["proj_a", "proj_c"]
    assert ids({"include_archived": "true"}) == ["proj_a", "proj_old", "proj_c"]
    fake.remove_project("proj_old")
    assert ids({"include_archived": "true"}) == ["proj_a", "proj_c"]
    assert _get(http, fake, "/organization/projects/proj_old").status_code == 404


@pytest.mark.parametrize(
    ("limit", "project_page_size", "sizes"),
    [(2, None, [2, 2, 1]), (100, None, [5]), (100, 2, [2, 2, 1])],
)
def test_projects_page_with_after(
    fake: FakeOpenAI,
    http: requests.Session,
    limit: int,
    project_page_size: int | None,
    sizes: list[int],
) -> None:
    """Paging with after=last_id yields every project once; page_size is not used."""
    for i in range(5):
        fake.add_project(f"proj_{i}", f"P{i}", archived=i == 3)
    fake.project_page_size = project_page_size
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit, "include_archived": "true"}
    while not pages or pages[-1]["has_more"]:
        pages.append(_get(http, fake, "/organization/projects", params).json())
        params["after"] = pages[-1]["last_id"]
    assert [len(p["data"]) for p in pages] == sizes
    assert [x["id"] for p in pages for x in p["data"]] == [
        f"proj_{i}" for i in range(5)
    ]
    for page in pages:
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]


def test_empty_project_list(fake: FakeOpenAI, http: requests.Session) -> None:
    """An empty list has null first_id and last_id."""
    page = _get(http, fake, "/organization/projects").json()
    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


# ---------------------------------------------------------------------------- auth


@pytest.mark.parametrize("header", [None, "Bearer sk-admin-WRONG-secret", "sk-admin-x"])
def test_auth_is_required_and_never_echoed(
    fake: FakeOpenAI, schemas: dict[str, Draft202012Validator], header: str | None
) -> None:
    """A missing or wrong key answers 401 without repeating the key sent."""
    headers = {} if header is None else {"Authorization": header}
    for path in ("/organization/costs", "/organization/projects", "/nowhere"):
        resp = requests.get(
            fake.base_url + path,
            params={"start_time": T0},
            headers=headers,
            timeout=TIMEOUT,
        )
        error = _assert_error(schemas, resp, 401)
        assert "API key" in error["message"]
        assert "WRONG" not in resp.text and "sk-admin-x" not in resp.text


# -------------------------------------------------------------------------- faults


def test_rate_limit_fault_is_consumed_once(
    fake: FakeOpenAI, http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """A 429 fault answers once with Retry-After, then the normal answer follows."""
    fake.inject(
        Fault.rate_limited(retry_after=2), path_prefix="/organization/costs", times=2
    )
    assert _get(http, fake, "/organization/projects").status_code == 200
    for _ in range(2):
        resp = _get(http, fake, "/organization/costs", {"start_time": T0})
        error = _assert_error(schemas, resp, 429)
        assert resp.headers["Retry-After"] == "2"
        assert error["code"] == "rate_limit_exceeded"
    assert fake.pending_faults() == 0
    assert (
        _get(http, fake, "/organization/costs", {"start_time": T0}).status_code == 200
    )
    assert len(fake.requests_to("/organization/costs")) == 3


def test_faults_are_fifo_and_prefix_may_include_v1(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Faults fire in injection order, for prefixes with or without /v1."""
    fake.inject(Fault.server_error(502), path_prefix="/v1/organization/usage")
    fake.inject(Fault.server_error(503))
    fake.inject(Fault.rate_limited(retry_after=None))
    codes = [_get(http, fake, "/organization/projects").status_code for _ in range(3)]
    assert codes == [503, 429, 200]
    resp = _get(http, fake, "/organization/usage/images", {"start_time": T0})
    assert resp.status_code == 502
    assert "Retry-After" not in resp.headers


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        (Fault.server_error(), 500, "server_error"),
        (Fault.server_error(503), 503, "server_error"),
        (Fault.unauthorized(), 401, "invalid_request_error"),
        (Fault(status=400), 400, "invalid_request_error"),
        (Fault(status=404), 404, "invalid_request_error"),
    ],
)
def test_error_faults_serve_error_responses(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    fault: Fault,
    status: int,
    error_type: str,
) -> None:
    """Status faults answer a valid ErrorResponse with that status."""
    fake.inject(fault)
    resp = _get(http, fake, "/organization/costs", {"start_time": T0})
    assert _assert_error(schemas, resp, status)["type"] == error_type


def test_body_faults_serve_raw_bytes(fake: FakeOpenAI, http: requests.Session) -> None:
    """Malformed and wrong-shape faults answer 200 with the given body."""
    fake.inject(Fault.malformed())
    fake.inject(Fault.wrong_shape())
    fake.inject(Fault(status=200, body=b"[]", retry_after=1))
    first = _get(http, fake, "/organization/costs", {"start_time": T0})
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        first.json()
    second = _get(http, fake, "/organization/costs", {"start_time": T0})
    assert second.json() == {"object": "page", "data": "oops"}
    third = _get(http, fake, "/organization/costs", {"start_time": T0})
    assert (third.content, third.headers["Retry-After"]) == (b"[]", "1")


def test_slow_fault_answers_normally(fake: FakeOpenAI, http: requests.Session) -> None:
    """A slow fault delays the normal answer."""
    fake.inject(Fault.slow(0.2))
    began = time.monotonic()
    resp = _get(http, fake, "/organization/costs", {"start_time": T0})
    assert resp.status_code == 200 and resp.json()["object"] == "page"
    assert time.monotonic() - began >= 0.2


def test_hang_times_out_client_and_stop_is_quick(http: requests.Session) -> None:
    """A hanging request trips the client timeout and does not delay stop()."""
    fake = FakeOpenAI(fake_key(http), now=lambda: NOW).start()
    try:
        fake.inject(Fault.hang(30))
        with pytest.raises(requests.ReadTimeout):
            http.get(fake.base_url + "/organization/projects", timeout=(1, 0.2))
        fake.inject(Fault.hang(30))
        outcome: list[BaseException | int] = []

        def call() -> None:
            """Make a request that hangs until the server stops."""
            try:
                with requests.Session() as session:
                    outcome.append(
                        session.get(
                            fake.base_url + "/organization/projects",
                            timeout=10,
                            headers={"Authorization": f"Bearer {fake.admin_key}"},
                        ).status_code
                    )
            except requests.RequestException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + TIMEOUT
        while len(fake.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        began = time.monotonic()
        fake.stop()
        stopped_in = time.monotonic() - began
    caller.join(5)
    assert stopped_in < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)


def test_stop_is_idempotent_and_base_url_needs_start() -> None:
    """stop() may be called twice, and base_url before start() raises."""
    fake = FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    fake.start()
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")
    fake.stop()
    fake.stop()


@pytest.mark.parametrize(
    "kwargs", [{"status": 99}, {"hang_seconds": -1.0}, {"retry_after": -1}]
)
def test_fault_rejects_impossible_values(kwargs: dict[str, Any]) -> None:
    """A Fault that no server could serve is refused when built."""
    with pytest.raises(ValueError):
        Fault(**kwargs)


# ------------------------------------------------------------------------- records


def test_requests_are_recorded_decoded_and_in_order(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """Recorded requests keep method, path, decoded ordered query and headers."""
    url = f"{fake.base_url}/organization/costs?start_time={T0}&group_by%5B%5D=a%2Cb"
    http.get(url, timeout=TIMEOUT)
    _get(http, fake, "/organization/projects", {"limit": 100})
    (rec,) = fake.requests_to("/organization/costs")
    assert rec.method == "GET"
    assert rec.path == "/v1/organization/costs"
    assert rec.query == [("start_time", str(T0)), ("group_by[]", "a,b")]
    assert rec.values("group_by") == ["a", "b"]
    assert rec.param("start_time") == str(T0)
    assert rec.headers["authorization"] == rec.headers["Authorization"]
    assert rec.headers.get("AUTHORIZATION") == f"Bearer {fake.admin_key}"
    assert "User-Agent" in rec.headers
    assert [r.path for r in fake.requests] == [
        "/v1/organization/costs",
        "/v1/organization/projects",
    ]
    fake.clear_requests()
    assert fake.requests == []


# -------------------------------------------------------------------- spend limits


@pytest.mark.parametrize("project_id", [None, "proj_a"])
def test_spend_limit_documents_validate(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    project_id: str | None,
) -> None:
    """A spend limit validates as its spec resource; an unset one answers 404."""
    fake.add_project("proj_a", "Alpha")
    scope = "project" if project_id else "organization"
    path = (
        f"/organization/projects/{project_id}/spend_limit"
        if project_id
        else "/organization/spend_limit"
    )
    _assert_error(schemas, _get(http, fake, path), 404)
    fake.set_spend_limit(project_id, 150_000, enforcement="inactive")
    resp = _get(http, fake, path)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    resource = f"{'Project' if project_id else 'Organization'}SpendLimitResource"
    _assert_valid(schemas[resource], doc)
    assert doc == {
        "object": f"{scope}.spend_limit",
        "threshold_amount": 150_000,
        "currency": "USD",
        "interval": "month",
        "enforcement": {"status": "inactive"},
    }
    fake.set_spend_limit(project_id, None)
    _assert_error(schemas, _get(http, fake, path), 404)
    _assert_error(schemas, _get(http, fake, path, {"limit": 1}), 400, "limit")


@pytest.mark.parametrize("project_id", [None, "proj_a"])
def test_spend_alert_pages_validate_and_page_with_after(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    project_id: str | None,
) -> None:
    """Spend alert lists validate, page by `after=<last_id>`, and end."""
    fake.add_project("proj_a", "Alpha")
    fake.spend_alert_page_size = 2
    for n in range(5):
        fake.add_spend_alert(project_id, f"alert_{n}", 10_000 * (n + 1))
    path = (
        f"/organization/projects/{project_id}/spend_alerts"
        if project_id
        else "/organization/spend_alerts"
    )
    schema = (
        "ProjectSpendAlertListResource"
        if project_id
        else "OrganizationSpendAlertListResource"
    )
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    for _ in range(10):
        resp = _get(http, fake, path, params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        _assert_valid(schemas[schema], page)
        ids += [a["id"] for a in page["data"]]
        if not page["has_more"]:
            break
        params = {"limit": 100, "after": page["last_id"]}
    assert ids == [f"alert_{n}" for n in range(5)]
    assert page["data"][0]["object"] == (
        "project.spend_alert" if project_id else "organization.spend_alert"
    )
    assert page["data"][0]["threshold_amount"] == 50_000
    empty = _get(http, fake, "/organization/projects/proj_a/spend_alerts").json()
    if project_id is None:
        assert empty == {
            "object": "list",
            "data": [],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }
    desc = _get(http, fake, path, {"order": "desc", "limit": 1}).json()
    assert [a["id"] for a in desc["data"]] == ["alert_4"]
    _assert_error(schemas, _get(http, fake, path, {"limit": 101}), 400, "limit")
    _assert_error(schemas, _get(http, fake, path, {"after": "nope"}), 400, "after")


@pytest.mark.parametrize(
    "path",
    [
        "/organization/spend_limit",
        "/organization/spend_alerts",
        "/organization/projects/proj_a/spend_limit",
        "/organization/projects/proj_a/spend_alerts",
    ],
)
def test_spend_reads_are_refused_on_demand(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
    path: str,
) -> None:
    """With `spend_refused` every spend read answers 403; an unknown project 404."""
    fake.add_project("proj_a", "Alpha")
    fake.set_spend_limit(None, 100)
    fake.set_spend_limit("proj_a", 100)
    assert _get(http, fake, path).status_code == 200
    fake.spend_refused = True
    error = _assert_error(schemas, _get(http, fake, path), 403)
    assert "permission" in error["message"]
    fake.spend_refused = False
    missing = path.replace("proj_a", "proj_missing")
    if missing != path:
        _assert_error(schemas, _get(http, fake, missing), 404, "project_id")


# ------------------------------------------------ live forms, quantities, API keys

KEYED_DAY = 1_764_979_200  # 2025-12-06: costs may be grouped by API key from here


def test_costs_carry_quantities_keys_and_the_live_extras(
    http: requests.Session, schemas: dict[str, Draft202012Validator]
) -> None:
    """Grouped by line item, results carry the quantity and unit; grouped by API key,
    the cost per key (null for none); every result has `organization_id` (no spec
    has it) and, with `omit_null_optionals`, every other result leaves its null
    optional keys out. All of it still validates."""
    now = KEYED_DAY + 2 * DAY
    with FakeOpenAI(now=lambda: now) as fake:
        fake.set_cost(
            KEYED_DAY, "proj_a", "in", 3.0, quantity=300, quantity_unit="tokens"
        )
        fake.set_cost(
            KEYED_DAY, "proj_b", "in", 2.5, api_keys={"key_1": 2.0, None: 0.5}
        )
        fake.set_cost(KEYED_DAY, "proj_b", "out", 1.0, quantity=4.5)
        fake.omit_null_optionals = True

        def first_bucket(group_by: list[str]) -> list[dict[str, Any]]:
            params = [("start_time", KEYED_DAY), *(("group_by[]", g) for g in group_by)]
            page = _get(http, fake, "/organization/costs", params)
            assert page.status_code == 200, page.text
            results: list[dict[str, Any]] = page.json()["data"][0]["results"]
            for result in results:
                _assert_valid(schemas["CostsResult"], result)
                assert result["organization_id"] == fake.organization_id
            return results

        by_item = first_bucket(["project_id", "line_item"])
        assert [
            (r["project_id"], r.get("quantity"), r.get("quantity_unit"))
            for r in by_item
        ] == [
            ("proj_a", 300.0, "tokens"),
            ("proj_b", None, None),
            ("proj_b", 4.5, None),
        ]
        assert [
            sorted(set(r) & {"api_key_id", "quantity", "quantity_unit"})
            for r in by_item
        ] == [
            ["api_key_id", "quantity", "quantity_unit"],
            [],  # every other result leaves its null optional keys out
            ["api_key_id", "quantity", "quantity_unit"],
        ]
        by_key = first_bucket(["project_id", "api_key_id"])
        assert [
            (r["project_id"], r.get("api_key_id"), r["amount"]["value"]) for r in by_key
        ] == [("proj_a", None, 3.0), ("proj_b", None, 1.5), ("proj_b", "key_1", 2.0)]
        assert all(r.get("quantity") is None for r in by_key)
        filtered = _get(
            http,
            fake,
            "/organization/costs",
            {"start_time": KEYED_DAY, "api_key_ids[]": "key_1"},
        ).json()["data"][0]["results"]
        assert [r["amount"]["value"] for r in filtered] == [2.0]


def test_costs_by_api_key_before_2025_12_06_are_refused(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
) -> None:
    """Grouping by API key from a day before 2025-12-06 is answered 400
    `invalid_request_error`, as the live API answers it; other groupings are not."""
    params = {"start_time": T0, "group_by": "api_key_id"}
    error = _assert_error(
        schemas, _get(http, fake, "/organization/costs", params), 400, "group_by"
    )
    assert error["type"] == "invalid_request_error"
    assert "2025-12-06" in error["message"]
    ok = _get(
        http, fake, "/organization/costs", {"start_time": T0, "group_by": "project_id"}
    )
    assert ok.status_code == 200


def test_decimal_amounts_take_the_live_forms(
    fake: FakeOpenAI, http: requests.Session
) -> None:
    """With decimal_amounts, two places where they are exact, else 28."""
    fake.set_cost(T0, "proj_a", "in", 12.5)
    fake.set_cost(T0, "proj_b", "in", 0.173915)
    fake.decimal_amounts = True
    page = _get(
        http, fake, "/organization/costs", {"start_time": T0, "group_by": "project_id"}
    ).json()
    values = [r["amount"]["value"] for r in page["data"][0]["results"]]
    assert values == ["12.50", "0.1739150000000000000000000000"]
    assert [float(v) for v in values] == [12.5, 0.173915]


def test_api_key_lists_validate_and_page_with_after(
    fake: FakeOpenAI,
    http: requests.Session,
    schemas: dict[str, Draft202012Validator],
) -> None:
    """A project's key list is a valid ProjectApiKeyListResponse, paged with `after`;
    an unknown project is 404, an unknown `after` 400."""
    fake.add_project("proj_a", "Alpha")
    for n in range(5):
        fake.add_api_key("proj_a", f"key_{n}", f"Key {n}")
    fake.api_key_page_size = 2
    path = "/organization/projects/proj_a/api_keys"
    ids: list[str] = []
    after: str | None = None
    for _ in range(5):
        body = _get(
            http, fake, path, {"limit": 100, **({"after": after} if after else {})}
        ).json()
        _assert_valid(schemas["ProjectApiKeyListResponse"], body)
        ids += [k["id"] for k in body["data"]]
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert ids == [f"key_{n}" for n in range(5)]
    fake.remove_api_key("proj_a", "key_2")
    names = [k["name"] for k in _get(http, fake, path, {"limit": 100}).json()["data"]]
    assert names == ["Key 0", "Key 1"]
    _assert_error(
        schemas, _get(http, fake, "/organization/projects/proj_x/api_keys"), 404
    )
    _assert_error(schemas, _get(http, fake, path, {"after": "key_x"}), 400, "after")
