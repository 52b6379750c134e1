"""The usage contract: what the API description offers, the client fetches and pushes.

Checked against the vendored description (`tests/data/`, written by
`scripts/vendor-openapi.py`):
- every `/organization/usage/*` path is fetched by the client, with `group_by` values
  and bucket widths the path accepts;
- the parser expects each endpoint's results to carry the `object` its result schema
  names, and requires no field the schema leaves optional;
- every integer counter of every usage result schema (every required one, and the
  optional ones too) reaches a metric through the real parser and the real metric
  mapping, or is listed in `SKIPPED` with the reason.

Refreshing the description after OpenAI adds a usage endpoint or a counter makes
these tests fail until the client handles it (or `SKIPPED` says why not); the tests
below prove that on mutated copies of the description.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from openai_cost_pusher.app import UsagePlan
from openai_cost_pusher.metrics import UsageColumns, add_usage_lines, usage_points
from openai_cost_pusher.model import Columns
from openai_cost_pusher.openai_api import USAGE_WIDTHS
from openai_cost_pusher.parsers import (
    DAY,
    USAGE_KINDS,
    BadField,
    parse_usage_bucket,
    usage_result_object,
)

SPEC = Path(__file__).resolve().parent / "data" / "openai-admin-api.structure.json"
USAGE_PREFIX = "/organization/usage/"

SKIPPED: Mapping[tuple[str, str], str] = {}
"""(endpoint, counter) -> why no metric takes it. Empty: every counter is pushed."""


def _load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SPEC.read_text(encoding="utf-8"))
    return doc


def _schema_name(kind: str) -> str:
    """Return the result schema's name the description uses for endpoint `kind`."""
    return "Usage" + "".join(w.title() for w in kind.split("_")) + "Result"


def _enum(operation: Mapping[str, Any], name: str) -> set[str]:
    """Return the values an (array or scalar) query parameter of `operation` allows."""
    for param in operation.get("parameters", []):
        if param.get("name") == name:
            schema = param.get("schema", {})
            return set(schema.get("items", schema).get("enum", []))
    return set()


def _counters(schema: Mapping[str, Any]) -> list[str]:
    """Return the integer properties of a result schema: its counters."""
    return [
        name
        for name, prop in schema.get("properties", {}).items()
        if prop.get("type") == "integer"
    ]


def _sample_result(schema: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Return a result of `schema` with every property: counters 1001, 1002, ...,
    every other field null, `object` as the schema names it."""
    result: dict[str, Any] = {}
    for i, (name, prop) in enumerate(schema.get("properties", {}).items()):
        if name == "object":
            result[name] = (prop.get("enum") or [usage_result_object(kind)])[0]
        elif prop.get("type") == "integer":
            result[name] = 1001 + i
        else:
            result[name] = None
    return result


def _metrics_of(kind: str, result: dict[str, Any]) -> dict[float, set[str]]:
    """Parse `result` as the client does and return, per pushed value, its metrics."""
    bucket = {"object": "bucket", "start_time": 0, "end_time": DAY, "results": [result]}
    _, lines = parse_usage_bucket(bucket, f"GET {USAGE_PREFIX}{kind}", kind, DAY)
    columns: UsageColumns = Columns()
    add_usage_lines(columns, lines, {}, ())
    table = usage_points(columns, DAY)
    found: dict[float, set[str]] = {}
    for (name, _labels), points in table.items():
        for point in points.items():
            found.setdefault(point[1], set()).add(name)
    return found


def contract_problems(
    doc: Mapping[str, Any], skipped: Mapping[tuple[str, str], str] = SKIPPED
) -> list[str]:
    """Return every way the client falls short of the description's usage endpoints."""
    problems: list[str] = []
    schemas = doc["components"]["schemas"]
    plan = UsagePlan.build(
        "1d",
        lookback_days=1,
        backfill_days=1,
        lookback_hours=1,
        backfill_hours=1,
        by_user=True,
        by_api_key=True,
    )
    described: set[str] = set()
    for path, item in doc["paths"].items():
        if not path.startswith(USAGE_PREFIX) or "get" not in item:
            continue
        kind = path.removeprefix(USAGE_PREFIX)
        described.add(kind)
        operation = item["get"]
        if kind not in plan.group_by:
            problems.append(f"{path}: never fetched (no usage kind {kind!r})")
            continue
        allowed = _enum(operation, "group_by")
        for dim in plan.group_by[kind]:
            if dim not in allowed:
                problems.append(f"{path}: group_by {dim!r} is not allowed")
        widths = _enum(operation, "bucket_width")
        for width in USAGE_WIDTHS:
            if width not in widths:
                problems.append(f"{path}: bucket_width {width!r} is not allowed")
        schema = schemas.get(_schema_name(kind))
        if schema is None:
            problems.append(f"{path}: no result schema {_schema_name(kind)}")
            continue
        problems += _result_problems(path, kind, schema, skipped)
    for kind in sorted(set(plan.group_by) - described):
        problems.append(f"{USAGE_PREFIX}{kind}: fetched, but not in the description")
    for (kind, field), reason in sorted(skipped.items()):
        if kind not in described:
            problems.append(f"SKIPPED {kind}.{field}: no such usage endpoint")
        if not reason.strip():
            problems.append(f"SKIPPED {kind}.{field}: no reason given")
    return problems


def _result_problems(
    path: str,
    kind: str,
    schema: Mapping[str, Any],
    skipped: Mapping[tuple[str, str], str],
) -> list[str]:
    """Return how the client mishandles the results of one usage endpoint."""
    problems: list[str] = []
    name = _schema_name(kind)
    objects = schema.get("properties", {}).get("object", {}).get("enum", [])
    if objects != [usage_result_object(kind)]:
        problems.append(
            f"{path}: results are {objects}, the parser expects "
            f"{usage_result_object(kind)!r}"
        )
        return problems
    required = set(schema.get("required", []))
    for field in USAGE_KINDS[kind].required:
        if field not in required:
            problems.append(f"{name}.{field}: optional, but the parser requires it")
    result = _sample_result(schema, kind)
    try:
        pushed = _metrics_of(kind, result)
    except BadField as exc:
        return [*problems, f"{name}: a valid result is refused: {exc}"]
    counters = _counters(schema)
    for field in counters:
        metrics = pushed.get(float(result[field]), set())
        listed = (kind, field) in skipped
        what = "required" if field in required else "optional"
        if not metrics and not listed:
            problems.append(f"{name}.{field}: {what} counter that no metric takes")
        if metrics and listed:
            problems.append(f"{name}.{field}: listed in SKIPPED, but pushed")
    for skipped_kind, field in sorted(skipped):
        if skipped_kind == kind and field not in counters:
            problems.append(f"SKIPPED {kind}.{field}: no such counter in {name}")
    return problems


# ------------------------------------------------------------------------- tests


def test_the_client_handles_every_usage_endpoint_and_counter() -> None:
    """The vendored description holds nothing the client leaves out."""
    doc = _load()
    assert sum(p.startswith(USAGE_PREFIX) for p in doc["paths"]) == 10
    assert contract_problems(doc) == []


def test_a_new_usage_path_fails_the_contract() -> None:
    """A usage endpoint added to the description fails until the client fetches it."""
    doc = _load()
    new = copy.deepcopy(doc)
    new["paths"][f"{USAGE_PREFIX}container_sessions"] = copy.deepcopy(
        doc["paths"][f"{USAGE_PREFIX}file_search_calls"]
    )
    assert contract_problems(new) == [
        f"{USAGE_PREFIX}container_sessions: never fetched "
        "(no usage kind 'container_sessions')"
    ]
    assert contract_problems(doc) == []  # the copy, not the original, was changed


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize(
    "schema", ["UsageWebSearchCallsResult", "UsageFileSearchCallsResult"]
)
def test_a_new_counter_fails_the_contract(schema: str, required: bool) -> None:
    """An integer counter added to a result schema fails until a metric takes it,
    or until `SKIPPED` lists it with the reason."""
    doc = copy.deepcopy(_load())
    result = doc["components"]["schemas"][schema]
    result["properties"]["num_cached_calls"] = {"type": "integer"}
    if required:
        result["required"].append("num_cached_calls")
    what = "required" if required else "optional"
    assert contract_problems(doc) == [
        f"{schema}.num_cached_calls: {what} counter that no metric takes"
    ]
    kind = "web_search_calls" if "Web" in schema else "file_search_calls"
    reason = {(kind, "num_cached_calls"): "a part of num_requests, pushed already"}
    assert contract_problems(doc, reason) == []


def test_a_new_token_counter_needs_no_change() -> None:
    """A `*_tokens` counter becomes a token type without a code change."""
    doc = copy.deepcopy(_load())
    result = doc["components"]["schemas"]["UsageCompletionsResult"]
    result["properties"]["output_reasoning_tokens"] = {"type": "integer"}
    result["required"].append("output_reasoning_tokens")
    assert contract_problems(doc) == []


def test_a_renamed_result_object_fails_the_contract() -> None:
    """Results whose `object` the parser does not expect fail the contract: the
    generic name (`...web_search_calls.result`) is not what the API sends."""
    doc = copy.deepcopy(_load())
    prop = doc["components"]["schemas"]["UsageWebSearchCallsResult"]["properties"]
    prop["object"]["enum"] = ["organization.usage.web_search_calls.result"]
    assert contract_problems(doc) == [
        f"{USAGE_PREFIX}web_search_calls: results are "
        "['organization.usage.web_search_calls.result'], the parser expects "
        "'organization.usage.web_searches.result'"
    ]


def test_a_group_by_the_path_refuses_fails_the_contract() -> None:
    """The client groups only by what each path accepts."""
    doc = copy.deepcopy(_load())
    operation = doc["paths"][f"{USAGE_PREFIX}web_search_calls"]["get"]
    for param in operation["parameters"]:
        if param["name"] == "group_by":
            param["schema"]["items"]["enum"].remove("context_level")
    assert contract_problems(doc) == [
        f"{USAGE_PREFIX}web_search_calls: group_by 'context_level' is not allowed"
    ]


def test_stale_skipped_entries_fail_the_contract() -> None:
    """A skip without a reason, or that names a counter or endpoint the description
    lacks, or a counter that is pushed after all, fails the contract."""
    doc = _load()
    stale = {
        ("web_search_calls", "num_gone"): "gone",
        ("gone_calls", "num_requests"): "gone",
        ("file_search_calls", "num_requests"): "pushed anyway",
        ("web_search_calls", "num_requests"): " ",
    }
    assert sorted(contract_problems(doc, stale)) == [
        "SKIPPED gone_calls.num_requests: no such usage endpoint",
        "SKIPPED web_search_calls.num_gone: no such counter in "
        "UsageWebSearchCallsResult",
        "SKIPPED web_search_calls.num_requests: no reason given",
        "UsageFileSearchCallsResult.num_requests: listed in SKIPPED, but pushed",
        "UsageWebSearchCallsResult.num_requests: listed in SKIPPED, but pushed",
    ]
