"""Token usage end to end: the fake's usage endpoints, a real VictoriaMetrics.

Every usage series is one sample per bucket, so `sum_over_time` over a day equals the
API's total for that day exactly, through restarts and revisions.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import requests

from openai_cost_pusher import app, metrics, parsers, tables
from openai_cost_pusher.app import UsagePlan
from openai_cost_pusher.demo import DemoOrganization
from openai_cost_pusher.metrics import UsageColumns, add_usage_lines, usage_points
from openai_cost_pusher.model import Columns
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI, Fault
from tests.orgs import DAY, make_pusher
from tests.vm import VictoriaMetrics

SPEC = Path(__file__).resolve().parent / "data" / "openai-admin-api.structure.json"
MODELS = ("gpt-4o", "gpt-4o-mini")
PROJECTS = {"proj_a": "Alpha Team", "proj_b": "Бета"}
FAMILY = {
    "num_model_requests": "openai_usage_requests",
    "images": "openai_usage_images",
    "characters": "openai_usage_audio_characters",
    "seconds": "openai_usage_audio_seconds",
    "num_sessions": "openai_usage_code_interpreter_sessions",
    "usage_bytes": "openai_usage_vector_store_bytes",
    "num_requests": "openai_usage_tool_calls",
}
GROUP_BY = {
    "completions": ["project_id", "model", "batch"],
    "embeddings": ["project_id", "model"],
    "moderations": ["project_id", "model"],
    "images": ["project_id", "model", "size", "source"],
    "audio_speeches": ["project_id", "model"],
    "audio_transcriptions": ["project_id", "model"],
    "vector_stores": ["project_id"],
    "code_interpreter_sessions": ["project_id"],
    "web_search_calls": ["project_id", "model", "context_level"],
    "file_search_calls": ["project_id"],
}
LEVELS = ("low", "high")


def seed_usage(fake: FakeOpenAI, today: int, days: int = 10, seed: int = 3) -> None:
    """Fill every usage endpoint with records at several hours of each day."""
    rng = random.Random(seed)
    for project_id, name in PROJECTS.items():
        fake.add_project(project_id, name)
    for day in range(today - (days - 1) * DAY, today + DAY, DAY):
        for hour in (1, 7, 13):
            t = day + hour * 3600
            for pid in PROJECTS:
                for model in MODELS:
                    for batch in (True, False):
                        fake.add_usage(
                            "completions",
                            t,
                            project_id=pid,
                            model=model,
                            batch=batch,
                            input_tokens=rng.randint(0, 10**6),
                            output_tokens=rng.randint(0, 10**5),
                            input_cached_tokens=rng.randint(0, 1000),
                            input_audio_tokens=0,
                            input_quantum_tokens=rng.randint(1, 50),
                            num_model_requests=rng.randint(1, 500),
                        )
                    fake.add_usage(
                        "embeddings",
                        t,
                        project_id=pid,
                        model="text-embedding-3-small",
                        input_tokens=rng.randint(1, 10**6),
                        num_model_requests=rng.randint(1, 50),
                    )
                fake.add_usage(
                    "images",
                    t,
                    project_id=pid,
                    model="dall-e-3",
                    size="1024x1024",
                    source="image.generation",
                    images=rng.randint(1, 9),
                    num_model_requests=2,
                )
                fake.add_usage(
                    "images",
                    t,
                    project_id=pid,
                    model="dall-e-3",
                    size="512x512",
                    source="image.edit",
                    images=rng.randint(1, 9),
                    num_model_requests=3,
                )
                fake.add_usage(
                    "audio_speeches",
                    t,
                    project_id=pid,
                    model="tts-1",
                    characters=rng.randint(1, 5000),
                    num_model_requests=1,
                )
                fake.add_usage(
                    "audio_transcriptions",
                    t,
                    project_id=pid,
                    model="whisper-1",
                    seconds=rng.randint(1, 600),
                    num_model_requests=1,
                )
                fake.add_usage(
                    "vector_stores",
                    t,
                    project_id=pid,
                    usage_bytes=rng.randint(10**6, 10**9),
                )
                fake.add_usage(
                    "code_interpreter_sessions",
                    t,
                    project_id=pid,
                    num_sessions=rng.randint(0, 4),
                )
                for level in LEVELS:
                    calls = rng.randint(0, 40)
                    fake.add_usage(
                        "web_search_calls",
                        t,
                        project_id=pid,
                        model="gpt-4o",
                        context_level=level,
                        user_id="user_1",
                        num_model_requests=calls,
                        num_requests=calls + rng.randint(0, 9),
                    )
                for store in ("vs_1", "vs_2"):
                    fake.add_usage(
                        "file_search_calls",
                        t,
                        project_id=pid,
                        vector_store_id=store,
                        user_id="user_2",
                        num_requests=rng.randint(0, 30),
                    )


def _api_answer(fake: FakeOpenAI, kind: str, start: int, width: str) -> list[Any]:
    """Read one endpoint from the fake directly, following every page."""
    buckets: list[Any] = []
    page = None
    limit = {"1d": 31, "1h": 168}[width]
    while True:
        params = [
            ("start_time", str(start)),
            ("bucket_width", width),
            ("limit", str(limit)),
            *[("group_by", g) for g in GROUP_BY[kind]],
        ]
        if page:
            params.append(("page", page))
        body = requests.get(
            f"{fake.base_url}/organization/usage/{kind}",
            params=params,
            headers={"Authorization": f"Bearer {fake.admin_key}"},
            timeout=10,
        ).json()
        buckets += body["data"]
        if not body["has_more"]:
            return buckets
        page = body["next_page"]


def expected_series(
    fake: FakeOpenAI, start: int, width: str
) -> dict[tuple[str, frozenset[tuple[str, str]], int], float]:
    """Return what VictoriaMetrics must hold, computed from the API's own answers."""
    out: dict[tuple[str, frozenset[tuple[str, str]], int], list[float]] = {}
    for kind in GROUP_BY:
        for bucket in _api_answer(fake, kind, start, width):
            for result in bucket["results"]:
                for field, value in result.items():
                    if field.endswith("_tokens"):
                        name = "openai_usage_tokens"
                        labels = {
                            "operation": kind,
                            "model": result["model"] or "",
                            "type": field[: -len("_tokens")],
                            "batch": _batch(result.get("batch")),
                        }
                    elif field in FAMILY:
                        name = FAMILY[field]
                        labels = _family_labels(field, kind, result)
                    else:
                        continue
                    labels["project_id"] = result["project_id"]
                    key = (
                        name,
                        frozenset((k, v) for k, v in labels.items() if v),
                        bucket["start_time"] * 1000,
                    )
                    out.setdefault(key, []).append(float(value))
    return {k: math.fsum(v) for k, v in out.items()}


def _batch(value: object) -> str:
    return "" if value is None else str(value).lower()


def _family_labels(field: str, kind: str, result: dict[str, Any]) -> dict[str, str]:
    if field == "num_model_requests":
        return {
            "operation": kind,
            "model": result.get("model") or "",
            "batch": _batch(result.get("batch")),
        }
    if field == "images":
        return {
            "model": result["model"],
            "size": result["size"],
            "source": result["source"],
        }
    if field in ("characters", "seconds"):
        return {"model": result["model"]}
    if field == "num_requests":
        return {
            "tool": kind.removesuffix("_calls"),
            "model": result.get("model") or "",
            "context_level": result.get("context_level") or "",
        }
    return {}


def stored_series(
    vm: VictoriaMetrics,
) -> dict[tuple[str, frozenset[tuple[str, str]], int], float]:
    """Return every usage sample in VictoriaMetrics keyed like `expected_series`."""
    out = {}
    for series in vm.export('{__name__=~"openai_usage_.*"}'):
        labels = {
            k: v
            for k, v in series.metric.items()
            if k not in ("__name__", "job", "project")
        }
        for ts, value in zip(series.timestamps, series.values, strict=True):
            key = (series.metric["__name__"], frozenset(labels.items()), ts)
            assert key not in out, key
            out[key] = value
    return out


def _one_completion(fake: FakeOpenAI, ts: int, input_tokens: int) -> None:
    """Add one completions record of proj_a at `ts`."""
    fake.add_usage(
        "completions",
        ts,
        project_id="proj_a",
        model="gpt-4o",
        batch=False,
        input_tokens=input_tokens,
        output_tokens=1,
        num_model_requests=1,
    )


def _spy_on_usage_series(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Return the project id of each usage series built from now on, as built."""
    built: list[str] = []
    real = metrics._usage_series

    def spy(line: Any, *args: Any) -> Any:
        built.append(dict(line.dims).get("project_id", ""))
        return real(line, *args)

    monkeypatch.setattr(metrics, "_usage_series", spy)
    return built


def _plan(width: str = "1d") -> UsagePlan:
    return UsagePlan.build(
        width, lookback_days=3, backfill_days=30, lookback_hours=6, backfill_hours=72
    )


def _today(clock: Clock) -> int:
    return int(clock.now) // DAY * DAY


def test_daily_usage_lands_exactly_and_survives_a_restart(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Every usage series and day equals the API; a restart changes no total."""
    today = _today(clock)
    seed_usage(fake, today)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    report = pusher.run_cycle()
    assert report.ok, report.error
    expected = expected_series(fake, today - 30 * DAY, "1d")
    assert stored_series(vm) == pytest.approx(expected, rel=1e-12)
    # new token fields become new types; the zero counter is a real zero
    types = {dict(k[1]).get("type") for k in expected if k[0] == "openai_usage_tokens"}
    assert {"input", "output", "input_cached", "input_audio", "input_quantum"} <= types
    # sum_over_time over a day is that day's total
    day = today - 2 * DAY
    rows = vm.query(
        'sum(sum_over_time(openai_usage_tokens{type="input"}[1d]))', at=day + DAY - 1
    )
    total = math.fsum(
        v
        for (name, labels, ts), v in expected.items()
        if name == "openai_usage_tokens"
        and ts == day * 1000
        and ("type", "input") in labels
    )
    assert float(rows[0]["value"][1]) == pytest.approx(total, rel=1e-12)
    restarted = make_pusher(fake, vm.push_url, clock, usage=_plan())  # a new process
    clock.now += 600
    assert restarted.run_cycle().ok
    assert stored_series(vm) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("width", ["1d", "1h"])
def test_each_usage_day_lands_once_every_endpoint_has_moved_past_it(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock, width: str
) -> None:
    """The endpoints' answers are read side by side, a day at a time: a usage day is
    pushed as soon as every endpoint has handed on a bucket past it (or ended), and
    before any endpoint reads further, so that no window is held whole; what lands
    is every day exactly as answered."""
    today = _today(clock)
    seed_usage(fake, today)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan(width))
    events: list[tuple[str, str, int]] = []  # ("bucket", kind, start), ("push", ...)
    api, sink = pusher.source, pusher.sink
    fetch_parts, push = api.fetch_usage_parts, sink.push  # type: ignore[attr-defined]

    def recorded_parts(kind: str, *args: Any) -> Any:
        for bucket in fetch_parts(kind, *args):
            events.append(("bucket", kind, bucket.start))
            yield bucket

    def recorded_push(chunks: Any) -> Any:
        body = list(chunks)
        for line in b"".join(body).decode().splitlines():
            if line.startswith("openai_usage_"):
                events.append(("push", "", int(line.rsplit(" ", 1)[1]) // 1000))
        return push(body)

    api.fetch_usage_parts = recorded_parts  # type: ignore[attr-defined]
    sink.push = recorded_push  # type: ignore[method-assign]
    report = pusher.run_cycle()
    assert report.ok, report.error
    assert stored_series(vm) == pytest.approx(
        expected_series(fake, report.get("usage").window.start, width), rel=1e-12
    )
    read = [(kind, start) for what, kind, start in events if what == "bucket"]
    kinds = {kind for kind, _ in read}
    assert len(kinds) >= 5  # the endpoints the seed fills
    for at, (what, _, ts) in enumerate(events):
        if what != "push":
            continue
        end = ts // DAY * DAY + DAY  # where the pushed sample's day ends
        seen = [(k, s) for w, k, s in events[:at] if w == "bucket"]
        for kind in kinds:
            starts = [s for k, s in read if k == kind]
            past = [s for s in starts if s >= end]
            # this endpoint had handed on every bucket of the day, at most one past it
            assert {s for s in starts if s < end} <= {s for k, s in seen if k == kind}
            assert [s for k, s in seen if k == kind and s >= end] in ([], past[:1])


def test_revised_buckets_replace_old_ones(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Usage that grows for today after a cycle is stored with its new total."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    _one_completion(fake, today + 3600, 777)
    clock.now += 900
    assert pusher.run_cycle().ok
    assert stored_series(vm) == pytest.approx(
        expected_series(fake, today - 30 * DAY, "1d"), rel=1e-12
    )


def test_hourly_buckets_sum_to_the_daily_totals(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """With 1h buckets, each hour is a sample and a day's sum equals the 1d answer."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan("1h"))
    report = pusher.run_cycle()
    assert report.ok, report.error
    # 72 complete hours before the current one, and the current one
    assert report.get("usage").window.start == int(clock.now) // 3600 * 3600 - 72 * 3600
    hourly = stored_series(vm)
    assert hourly == pytest.approx(
        expected_series(fake, report.get("usage").window.start, "1h"), rel=1e-12
    )
    day = today - DAY
    daily = expected_series(fake, day, "1d")
    per_day: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for (name, labels, ts), value in hourly.items():
        if (
            day * 1000 <= ts < (day + DAY) * 1000
            and name != "openai_usage_vector_store_bytes"
        ):
            per_day[(name, labels)] = per_day.get((name, labels), 0.0) + value
    for (name, labels, ts), value in daily.items():
        if ts == day * 1000 and name != "openai_usage_vector_store_bytes":
            assert per_day[(name, labels)] == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"output_tokens": 1, "num_model_requests": 1}, "missing"),
        (
            {"input_tokens": "12", "output_tokens": 1, "num_model_requests": 1},
            "expected a number",
        ),
    ],
)
def test_a_bad_usage_result_withholds_its_day_only(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    result: dict[str, Any],
    reason: str,
) -> None:
    """A usage result missing a required field withholds its bucket's day, named
    with endpoint and path; costs land, and the day is counted as rejected."""
    today = _today(clock)
    fake.add_project("proj_a", "A")
    fake.set_cost(today, "proj_a", "x", 2.0)
    doc = {
        "object": "page",
        "has_more": False,
        "next_page": None,
        "data": [
            {
                "object": "bucket",
                "start_time": today,
                "end_time": today + DAY,
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "project_id": "proj_a",
                        "model": "gpt-4o",
                        "batch": None,
                        **result,
                    }
                ],
            }
        ],
    }
    fake.inject(
        Fault.wrong_shape(doc),
        path_prefix="/v1/organization/usage/completions",
        times=10,
    )
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    report = pusher.run_cycle()
    assert report.get("costs").ok
    usage = report.get("usage")
    assert usage.ok
    [bad] = usage.rejected
    assert (bad.start, bad.endpoint) == (today, "/organization/usage/completions")
    assert bad.path == "data[0].results[0].input_tokens"
    assert reason in bad.reason
    assert pusher.stats.rejected_buckets == {"costs": 0, "usage": 1}
    assert vm.export('{__name__="openai_daily_cost"}')
    assert vm.export('{__name__=~"openai_usage_.*"}') == []


def test_unknown_fields_are_ignored(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Fields the spec does not know are ignored; unknown *_tokens become types."""
    today = _today(clock)
    fake.add_project("proj_a", "A")
    doc = {
        "object": "page",
        "has_more": False,
        "next_page": None,
        "extra": {"x": 1},
        "data": [
            {
                "object": "bucket",
                "start_time": today,
                "end_time": today + DAY,
                "surprise": [1, 2],
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "project_id": "proj_a",
                        "model": "gpt-4o",
                        "batch": False,
                        "input_tokens": 5,
                        "output_tokens": 6,
                        "num_model_requests": 1,
                        "future_field": "whatever",
                        "input_hologram_tokens": 9,
                    }
                ],
            }
        ],
    }
    fake.inject(
        Fault.wrong_shape(doc),
        path_prefix="/v1/organization/usage/completions",
        times=10,
    )
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    types = {
        s.metric.get("type"): s.values
        for s in vm.export('{__name__="openai_usage_tokens"}')
    }
    assert types == {"input": [5.0], "output": [6.0], "input_hologram": [9.0]}


def _tool_calls(vm: VictoriaMetrics) -> dict[frozenset[tuple[str, str]], list[int]]:
    """Return each `openai_usage_tool_calls` series' labels and sample times (s)."""
    return {
        frozenset(s.metric.items()): [ts // 1000 for ts in s.timestamps]
        for s in vm.export('{__name__="openai_usage_tool_calls"}')
    }


def test_tool_calls_land_as_their_own_series(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Web and file search calls are fetched like every usage kind (same window and
    width, grouped by what each allows, plus the user when asked) and land as
    `openai_usage_tool_calls{tool=...}`, one sample per day at 00:00 UTC, today's
    included although the API ends today's bucket at now."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    plan = UsagePlan.build(
        "1d",
        lookback_days=3,
        backfill_days=30,
        lookback_hours=6,
        backfill_hours=72,
        by_user=True,
    )
    pusher = make_pusher(fake, vm.push_url, clock, usage=plan)
    report = pusher.run_cycle()
    assert report.ok, report.error
    # the cycle asked for every usage path of the API description, and nothing else
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    described = {p for p in spec["paths"] if p.startswith("/organization/usage/")}
    asked = {r.path.removeprefix("/v1") for r in fake.requests if "/usage/" in r.path}
    assert asked == described
    for kind, group_by in (
        ("web_search_calls", ["project_id", "model", "context_level", "user_id"]),
        ("file_search_calls", ["project_id", "user_id"]),
    ):
        sent = fake.requests_to(f"/organization/usage/{kind}")  # pages of 4 days
        assert len(sent) == 8
        for request in sent:
            assert request.values("group_by") == group_by
            assert request.param("start_time") == str(today - 30 * DAY)
            assert (request.param("bucket_width"), request.param("limit")) == (
                "1d",
                "31",
            )
            assert request.param("end_time") is None
    days = [today - 2 * DAY, today - DAY, today]
    job = ("job", "test")
    expected: dict[frozenset[tuple[str, str]], list[int]] = {}
    for pid, name in PROJECTS.items():
        project = (("project_id", pid), ("project", name.lower().replace(" ", "_")))
        for level in LEVELS:
            labels = {job, *project, ("tool", "web_search"), ("model", "gpt-4o")}
            labels |= {("context_level", level), ("user_id", "user_1")}
            expected[frozenset({("__name__", "openai_usage_tool_calls"), *labels})] = (
                days
            )
        labels = {job, *project, ("tool", "file_search"), ("user_id", "user_2")}
        expected[frozenset({("__name__", "openai_usage_tool_calls"), *labels})] = days
    assert _tool_calls(vm) == expected
    # each day's value is the API's, web search calls summed over both projects
    answer = _api_answer(fake, "web_search_calls", today - 30 * DAY, "1d")
    assert answer[-1]["end_time"] == int(clock.now)  # the live API's short bucket
    api_today = sum(r["num_requests"] for r in answer[-1]["results"])
    rows = vm.query(
        'sum(sum_over_time(openai_usage_tool_calls{tool="web_search"}[1d]))',
        at=today + DAY - 1,
    )
    assert float(rows[0]["value"][1]) == api_today > 0
    requests_rows = vm.query(
        'sum(sum_over_time(openai_usage_requests{operation="web_search_calls"}[1d]))',
        at=today + DAY - 1,
    )
    model_requests = sum(r["num_model_requests"] for r in answer[-1]["results"])
    assert float(requests_rows[0]["value"][1]) == model_requests > 0


@pytest.mark.parametrize(
    ("kind", "result", "field"),
    [
        (
            "web_search_calls",
            {
                "object": "organization.usage.web_searches.result",
                "num_model_requests": 3,
                "num_requests": "4",
            },
            "num_requests",
        ),
        (
            "file_search_calls",
            {"object": "organization.usage.file_searches.result"},
            "num_requests",
        ),
        (
            "web_search_calls",
            {
                "object": "organization.usage.web_search_calls.result",
                "num_model_requests": 3,
                "num_requests": 4,
            },
            "object",
        ),
    ],
)
def test_a_bad_tool_call_result_withholds_its_day_only(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    kind: str,
    result: dict[str, Any],
    field: str,
) -> None:
    """A malformed tool call result withholds its day, named with endpoint and path;
    the day before lands, and so do the costs."""
    today = _today(clock)
    fake.add_project("proj_a", "A")
    fake.set_cost(today, "proj_a", "x", 2.0)
    good = {
        "web_search_calls": {
            "object": "organization.usage.web_searches.result",
            "num_model_requests": 1,
            "num_requests": 2,
            "model": "gpt-4o",
            "context_level": "low",
        },
        "file_search_calls": {
            "object": "organization.usage.file_searches.result",
            "num_requests": 5,
        },
    }[kind]
    doc = {
        "object": "page",
        "has_more": False,
        "next_page": None,
        "data": [
            {
                "object": "bucket",
                "start_time": start,
                "end_time": start + DAY,
                "results": [{"project_id": "proj_a", **item}],
            }
            for start, item in ((today - DAY, good), (today, result))
        ],
    }
    fake.inject(
        Fault.wrong_shape(doc), path_prefix=f"/v1/organization/usage/{kind}", times=10
    )
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    report = pusher.run_cycle()
    assert report.get("costs").ok
    usage = report.get("usage")
    assert usage.ok
    [bad] = usage.rejected
    assert (bad.start, bad.endpoint) == (today, f"/organization/usage/{kind}")
    assert bad.path == f"data[1].results[0].{field}"
    assert pusher.stats.rejected_buckets == {"costs": 0, "usage": 1}
    assert vm.export('{__name__="openai_daily_cost"}')
    assert list(_tool_calls(vm).values()) == [[today - DAY]]


def test_the_demo_shows_tool_calls() -> None:
    """The demo organization answers both tool call endpoints, grouped as asked: web
    search calls in three projects, file search calls where it spends on them."""
    now = 1_730_419_200 + 10 * 3600  # 10:00 UTC
    org = DemoOrganization(lambda: now)
    plan = _plan()
    columns: UsageColumns = Columns()
    for kind in ("web_search_calls", "file_search_calls"):
        today = now // DAY * DAY
        group_by = plan.group_by[kind]
        pages = org.fetch_usage(kind, today - DAY, today + DAY, "1d", group_by)
        add_usage_lines(columns, (x for page in pages for x in page), {}, ())
    table = usage_points(columns, DAY)
    series = {
        (name, dict(labels)["tool"], dict(labels)["project_id"]): dict(points.items())
        for (name, labels), points in table.items()
        if name == "openai_usage_tool_calls"
    }
    assert sorted(series) == [
        ("openai_usage_tool_calls", "file_search", "proj_demo_search"),
        ("openai_usage_tool_calls", "web_search", "proj_demo_chat"),
        ("openai_usage_tool_calls", "web_search", "proj_demo_intl"),
        ("openai_usage_tool_calls", "web_search", "proj_demo_search"),
    ]
    for days in series.values():
        assert len(days) == 2 and min(days.values()) > 0
    web = {
        dict(labels)["context_level"]
        for (name, labels) in table
        if name == "openai_usage_tool_calls" and ("tool", "web_search") in labels
    }
    assert web == {"medium"}


@pytest.mark.parametrize("width", ["1d", "1h"])
def test_an_unchanged_usage_day_is_not_built_again(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    width: str,
) -> None:
    """A usage day whose buckets equal those of its last landing builds no samples;
    a day with a grown bucket is built, and the store ends equal to the API."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan(width))
    assert pusher.run_cycle().ok
    clock.now += 60
    # the first lookback: a day cut by the window (1h) holds fewer buckets than the
    # backfill gave it, so it is compared sample by sample once
    assert pusher.run_cycle().ok
    built: list[int] = []
    real = metrics.usage_samples

    def spy(table: Any, start: int, end: int, keys: Any = None) -> Any:
        built.append(start // DAY * DAY)
        return real(table, start, end, keys)

    monkeypatch.setattr(app, "usage_samples", spy)
    clock.now += 60
    assert pusher.run_cycle().ok
    assert built == []
    fake.add_usage(
        "completions",
        int(clock.now) // 3600 * 3600,  # this hour: inside either window
        project_id="proj_a",
        model="gpt-4o",
        batch=False,
        input_tokens=777,
        output_tokens=1,
        num_model_requests=1,
    )
    clock.now += 60
    assert pusher.run_cycle().ok
    assert built == [today]
    assert stored_series(vm) == pytest.approx(
        expected_series(fake, today - 30 * DAY, width), rel=1e-12
    )


def test_usage_labels_are_built_once_while_the_names_stay(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady cycle builds no usage series: each counter's series comes from the
    last cycle's. A renamed project's series are built again, under the new name,
    and the next cycle builds none again."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    built = _spy_on_usage_series(monkeypatch)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    assert set(built) >= set(PROJECTS)
    for _ in range(2):
        built.clear()
        clock.now += 60
        assert pusher.run_cycle().ok
        assert built == []
    renamed = next(iter(PROJECTS))
    fake.add_project(renamed, "Renamed Usage")
    clock.now += 60
    assert pusher.run_cycle().ok
    assert set(built) >= set(PROJECTS)  # every series: the names are one input
    built.clear()
    clock.now += 60
    assert pusher.run_cycle().ok
    assert built == []
    lookback = {
        ts
        for s in vm.export('{__name__=~"openai_usage_.*",project="renamed_usage"}')
        for ts in s.timestamps
    }
    assert lookback == {(today - d * DAY) * 1000 for d in range(3)}


def test_a_cycle_keeps_the_series_of_at_most_usage_lines_kept_lines(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `USAGE_LINES_KEPT` combinations, the others' labels are built again
    each cycle (the memory kept stays bounded), and the store still equals the
    API."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    monkeypatch.setattr(tables, "USAGE_LINES_KEPT", 3)
    built = _spy_on_usage_series(monkeypatch)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    first = len(built)
    assert pusher.tables.usage is not None and len(pusher.tables.usage.series) == 3
    built.clear()
    clock.now += 60
    _one_completion(fake, today, 5)
    assert pusher.run_cycle().ok
    assert 0 < len(built) < first
    assert len(pusher.tables.usage.series) == 3
    assert stored_series(vm) == pytest.approx(
        expected_series(fake, today - 30 * DAY, "1d"), rel=1e-12
    )


def test_renewed_series_numbers_take_the_kept_numbers_with_them(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the tables' series numbers are renewed (an index holding many series
    that came and went), the usage numbers kept from the last cycle go with them:
    every value still lands on its own series, and the labels are built again."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    monkeypatch.setattr(tables, "SERIES_SLACK", -(10**9))  # renewed every cycle
    built = _spy_on_usage_series(monkeypatch)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    assert pusher.tables.usage is not None
    generation = pusher.tables.usage.generation
    for tokens in (777, 778):
        built.clear()
        clock.now += 60
        _one_completion(fake, today, tokens)
        assert pusher.run_cycle().ok
        assert pusher.tables.usage.generation != generation
        generation = pusher.tables.usage.generation
        assert set(built) >= set(PROJECTS)
        assert stored_series(vm) == pytest.approx(
            expected_series(fake, today - 30 * DAY, "1d"), rel=1e-12
        )


def test_a_renewed_usage_index_keeps_the_ledger_on_its_series(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usage ledger, keyed by the usage table's series numbers, follows them
    when the index is renewed: a value revised down after the renewal is still a
    downward revision (the series is found, not taken for a new one)."""
    today = _today(clock)
    # a series before the steady window, numbered first by the backfill only
    _one_completion(fake, today - 10 * DAY, 5)
    seed_usage(fake, today, days=3)
    _one_completion(fake, today, 777)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    assert pusher.stats.downward_revisions == 0
    monkeypatch.setattr(tables, "SERIES_SLACK", -(10**9))  # renewed now
    fake.clear_usage()
    _one_completion(fake, today - 10 * DAY, 5)
    seed_usage(fake, today, days=3)  # the same, less the one completion
    clock.now += 60
    old = pusher.tables.usage
    assert pusher.run_cycle().ok
    assert pusher.tables.usage is not old
    # input and output tokens, and requests, of proj_a's gpt-4o today went down
    assert pusher.stats.downward_revisions == 3


def _spy_on_parsed_batches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Return the endpoint of each usage results batch parsed from now on (an
    empty `results` array is no batch)."""
    parsed: list[str] = []
    real = parsers.UsageBucket._add

    def spy(
        self: parsers.UsageBucket, batch: list[Any], offset: int, start: int
    ) -> None:
        if batch:
            parsed.append(self._kind)
        real(self, batch, offset, start)

    monkeypatch.setattr(parsers.UsageBucket, "_add", spy)
    return parsed


def test_usage_batches_sent_again_are_not_parsed(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady cycle parses none of the usage results it was sent before byte for
    byte: each batch of the lookback adds what it added last cycle. A changed
    bucket is parsed, and lands; the store equals the API throughout. Only the
    lookback's batches are kept."""
    today = _today(clock)
    seed_usage(fake, today, days=10)
    parsed = _spy_on_parsed_batches(monkeypatch)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    assert "completions" in parsed
    state = pusher.tables.usage
    assert state is not None
    # 3 days of lookback (today and the two before) of each endpoint with usage
    kept = {kind: len(batches) for kind, batches in state.batches.items()}
    assert kept["completions"] == 3 and max(kept.values()) == 3
    expected = expected_series(fake, today - 30 * DAY, "1d")
    for _ in range(2):
        parsed.clear()
        clock.now += 60
        assert pusher.run_cycle().ok
        assert parsed == []
        assert stored_series(vm) == pytest.approx(expected, rel=1e-12)
    _one_completion(fake, today + 3600, 777)
    clock.now += 60
    assert pusher.run_cycle().ok
    assert parsed == ["completions"]  # today's completions bucket alone
    assert stored_series(vm) == pytest.approx(
        expected_series(fake, today - 30 * DAY, "1d"), rel=1e-12
    )
    # what was not parsed was added all the same: no series went missing
    assert pusher.stats.downward_revisions == 0


def test_usage_batches_kept_are_bounded(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `USAGE_VALUES_KEPT` values, the other batches are parsed every cycle,
    and the store still equals the API."""
    today = _today(clock)
    seed_usage(fake, today, days=3)
    monkeypatch.setattr(tables, "USAGE_VALUES_KEPT", 40)
    parsed = _spy_on_parsed_batches(monkeypatch)
    pusher = make_pusher(fake, vm.push_url, clock, usage=_plan())
    assert pusher.run_cycle().ok
    first = len(parsed)
    state = pusher.tables.usage
    assert state is not None
    held = [len(v) for b in state.batches.values() for _, v in b.values()]
    assert 0 < sum(held) <= 40
    parsed.clear()
    clock.now += 60
    _one_completion(fake, today, 5)
    assert pusher.run_cycle().ok
    assert 0 < len(parsed) < first
    assert stored_series(vm) == pytest.approx(
        expected_series(fake, today - 30 * DAY, "1d"), rel=1e-12
    )
