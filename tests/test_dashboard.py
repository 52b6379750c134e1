"""Tests for the Grafana dashboard: every query on real data, the schema, the ConfigMap.

The queries run against a real VictoriaMetrics (scripts/fetch-victoriametrics.sh)
holding the demo-like organization of `cost_histories.py`, and each panel is checked
against numbers computed here from the same seeded lines, on one known day. Beside it
the server holds `--demo` data (demo="true": the same projects at ten times the spend,
one project of its own, and pushers of its own), which no panel may show by default.
The JSON
is type-checked with `tsc` against npm @grafana/schema (scripts/fetch-node-tools.sh),
since no Grafana server can run here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.cost_histories import (
    CostLine,
    Outage,
    SpendLimit,
    day_start_ms,
    demo_organization,
    push_text,
    render_costs,
    render_self_monitoring,
    render_spend_limits,
)
from tests.procs import ROOT
from tests.vm import VictoriaMetrics

DASHBOARD = ROOT / "deploy" / "grafana" / "openai-costs-dashboard.json"
CONFIGMAP = ROOT / "deploy" / "grafana" / "openai-costs-dashboard-configmap.yaml"
LAST_DAY = date(2025, 3, 31)
KNOWN_DAY = date(2025, 3, 15)
NOW = datetime(2025, 3, 31, 15, tzinfo=UTC)
HEALTH_AT = datetime(2025, 3, 31, 11, 50, tzinfo=UTC)  # failing since 11:00
MID_MONTH = datetime(2025, 3, 20, 12, tzinfo=UTC)
ALL = ".*"
REAL = 'demo!="true"'  # the Data variable's default
DEMO = 'demo="true"'
DEMO_FACTOR = 10  # the demo data: the same projects at ten times the spend ...
DEMO_ONLY = "customer_chat"  # ... and a project of its own
# Hard limits set at OpenAI: chat_prod's enforcing, search_embeddings' not, and the
# organization's (not a project's: not in the per-project table); the demo's own.
LIMITS = (
    SpendLimit("proj_chat", "chat_prod", 2000.0),
    SpendLimit("proj_search", "search_embeddings", 150.0, enforcement="inactive"),
    SpendLimit("", "", 5000.0),
)
DEMO_LIMIT = SpendLimit("proj_demo_chat", DEMO_ONLY, 800.0)
# chat_prod's spend per API key: (api_key_id, api_key, share of each day).
KEYS = (("key_a", "prod-server", 0.75), ("key_b", "batch-worker", 0.25))
# The pusher's series (costs, today's costs, usage, self-monitoring): every one the
# dashboard selects must follow the Data variable.
METRIC = r"\b(openai_\w+)\b"


def _panels() -> dict[str, dict[str, Any]]:
    """Return the dashboard's panels by title."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: p for p in dashboard["panels"]}


def _panel(prefix: str) -> dict[str, Any]:
    """Return the one panel whose title starts with `prefix`."""
    found = [p for title, p in _panels().items() if title.startswith(prefix)]
    assert len(found) == 1, prefix
    return found[0]


def _expr(
    panel: dict[str, Any], ref: str = "A", project: str = ALL, demo: str = REAL
) -> str:
    """Return a target's expression with the dashboard variables substituted."""
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    expr: str = target["expr"]
    return expr.replace("$project", project).replace("$demo", demo)


def _as_demo(text: str) -> str:
    """Return Prometheus text with demo="true" added to every sample's labels."""
    return "".join(
        line.replace("{", '{demo="true",', 1) + "\n"
        for line in text.splitlines()
        if line
    )


def _demo_lines(lines: list[CostLine]) -> list[CostLine]:
    """Return the demo data's cost lines (before the demo label is added)."""
    scaled = [dataclasses.replace(x, value=x.value * DEMO_FACTOR) for x in lines]
    extra = [
        CostLine("proj_demo_chat", DEMO_ONLY, "gpt-4o, input", day, 500.0)
        for day in sorted({x.day for x in lines})
    ]
    return scaled + extra


def _key_lines(lines: list[CostLine]) -> dict[tuple[str, date], float]:
    """Return chat_prod's seeded spend per API key name and day."""
    out: dict[tuple[str, date], float] = defaultdict(float)
    for line in lines:
        if line.project == "chat_prod":
            for _key_id, key, share in KEYS:
                out[(key, line.day)] += line.value * share
    return dict(out)


def _render_key_costs(lines: list[CostLine]) -> str:
    """Render chat_prod's openai_daily_cost_by_api_key samples (one per key and day)."""
    out = []
    for (key, day), value in sorted(_key_lines(lines).items()):
        key_id = next(k for k, name, _share in KEYS if name == key)
        labels = (
            f'job="openai-cost-pusher",project_id="proj_chat",project="chat_prod",'
            f'api_key_id="{key_id}",api_key="{key}",currency="usd"'
        )
        out.append(
            f"openai_daily_cost_by_api_key{{{labels}}} {value!r} {day_start_ms(day)}"
        )
    return "\n".join(out) + "\n"


def _ts(at: datetime | date) -> float:
    """Return epoch seconds for an aware datetime or a UTC day's 00:00."""
    if not isinstance(at, datetime):
        at = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return at.timestamp()


def _by(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    """Return an instant-query result as {label value: number}."""
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def _scalar(result: list[dict[str, Any]]) -> float:
    """Return the single number of an instant-query result."""
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _query_range(
    vm: VictoriaMetrics, expr: str, start: float, end: float, step: int
) -> list[dict[str, Any]]:
    """Run a range query like Grafana does and return its matrix."""
    vm.flush()
    resp = requests.get(
        f"{vm.url}/api/v1/query_range",
        params={"query": expr, "start": str(start), "end": str(end), "step": str(step)},
        timeout=30,
    )
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    matrix: list[dict[str, Any]] = body["data"]["result"]
    return matrix


def _day_points(
    matrix: list[dict[str, Any]], label: str
) -> dict[tuple[str, date], float]:
    """Return range points as {(label value, UTC day of the point): value}."""
    out = {}
    for series in matrix:
        for ts, value in series["values"]:
            day = datetime.fromtimestamp(ts, UTC).date()
            out[(series["metric"].get(label, ""), day)] = float(value)
    return out


def _totals(lines: list[CostLine], key: str) -> dict[tuple[str, date], float]:
    """Return the seeded daily sums by project or line item."""
    values: dict[tuple[str, date], list[float]] = defaultdict(list)
    for line in lines:
        values[(getattr(line, key), line.day)].append(line.value)
    return {k: math.fsum(v) for k, v in values.items()}


@pytest.fixture(name="lines", scope="module")
def _lines() -> list[CostLine]:
    """Return the demo organization's 30 days ending on Monday, March 31 2025."""
    return demo_organization(LAST_DAY)


@pytest.fixture(name="vm", scope="module")
def _vm(
    tmp_path_factory: pytest.TempPathFactory, lines: list[CostLine]
) -> Iterator[VictoriaMetrics]:
    """Start a VictoriaMetrics holding the demo organization and a pusher's health,
    and beside them `--demo` data (demo="true") that must stay out of the panels."""
    server = VictoriaMetrics(tmp_path_factory.mktemp("vm-dashboard"))
    try:
        push_text(server.push_url, render_costs(lines))
        failing = Outage(
            datetime(2025, 3, 31, 11, tzinfo=UTC),
            datetime(2025, 3, 31, 12, tzinfo=UTC),
            dead=False,
        )
        start = datetime(2025, 3, 30, tzinfo=UTC)
        end = datetime(2025, 3, 31, 12, tzinfo=UTC)
        push_text(server.push_url, render_self_monitoring(start, end, [failing]))
        # The demo: more spend, a healthy pusher (it would shorten "since last
        # success") and a second one failing since 10:00 (it would double "failed").
        push_text(server.push_url, _as_demo(render_costs(_demo_lines(lines))))
        push_text(server.push_url, _as_demo(render_self_monitoring(start, end)))
        demo_failing = Outage(datetime(2025, 3, 31, 10, tzinfo=UTC), end, dead=False)
        push_text(
            server.push_url,
            _as_demo(
                render_self_monitoring(start, end, [demo_failing], job="demo-failing")
            ),
        )
        # Hard limits, pushed hourly as the pusher does, and costs per API key;
        # the demo has both too (its keys: the same at ten times the spend).
        hourly = (datetime(2025, 3, 19, tzinfo=UTC), NOW)
        push_text(server.push_url, render_spend_limits(LIMITS, *hourly))
        push_text(server.push_url, _as_demo(render_spend_limits([DEMO_LIMIT], *hourly)))
        push_text(server.push_url, _render_key_costs(lines))
        push_text(server.push_url, _as_demo(_render_key_costs(_demo_lines(lines))))
        server.flush()
        yield server
    finally:
        server.stop()


def test_variables_and_datasource() -> None:
    """The datasource is a variable, project a multi-select; every query uses both,
    and every series selector the Data variable (real data only by default)."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    project = variables["project"]
    assert project["multi"] and project["includeAll"] and project["allValue"] == ".*"
    project_values = project["query"]["query"]
    assert project_values == "label_values(openai_daily_cost{$demo}, project)"
    demo = variables["demo"]
    assert demo["type"] == "custom" and not demo["multi"] and not demo["includeAll"]
    assert demo["current"]["value"] == REAL
    assert [o["value"] for o in demo["options"]] == [REAL, DEMO]
    assert [o["selected"] for o in demo["options"]] == [True, False]
    assert demo["query"] == f"Real data only : {REAL},Demo data only : {DEMO}"
    # Grafana passes a whole label matcher through unescaped (its Prometheus
    # datasource escapes only backslashes and single quotes, or, with
    # prometheusSpecialCharsInLabelValues, leaves `name!="value"` as it is).
    for option in demo["options"]:
        assert re.fullmatch(r'\w+(=|!=)"[^"\\\']*"', option["value"]), option
    assert list(variables).index("demo") < list(variables).index("project")
    assert dashboard["timezone"] == "utc"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            if "openai_daily_cost" in expr:
                assert 'project=~"$project"' in expr, panel["title"]
            names = re.findall(METRIC, expr)
            assert names, panel["title"]
            selectors = re.findall(METRIC + r"\{([^}]*)\}", expr)
            assert len(selectors) == len(names), (panel["title"], expr)
            for _name, matchers in selectors:
                assert "$demo" in matchers.split(","), (panel["title"], expr)


def test_bar_panels_have_one_point_per_day() -> None:
    """Both daily bar panels ask for a 1d step and draw stacked bars."""
    for prefix in ("Daily spend per project", "Daily spend by line item"):
        panel = _panel(prefix)
        assert panel["interval"] == "1d"
        assert all(t["interval"] == "1d" for t in panel["targets"])
        assert panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"


@pytest.mark.vm
def test_spend_today_panel(vm: VictoriaMetrics, lines: list[CostLine]) -> None:
    """Spend today per project is the sum of today's line items, not yesterday's."""
    got = _by(vm.query(_expr(_panel("Spend today")), _ts(NOW)), "project")
    totals = _totals(lines, "project")
    want = {p: v for (p, day), v in totals.items() if day == LAST_DAY}
    assert got.keys() == want.keys()
    for project, value in want.items():
        assert got[project] == pytest.approx(value, rel=1e-9), project
    assert got["chat_prod"] != pytest.approx(
        totals[("chat_prod", LAST_DAY - timedelta(1))]
    )


@pytest.mark.vm
@pytest.mark.parametrize(
    "start",
    [datetime(2025, 3, 2, tzinfo=UTC), datetime(2025, 3, 2, 13, 37, tzinfo=UTC)],
    ids=["aligned", "unaligned"],
)
def test_daily_bars_have_each_days_value(
    vm: VictoriaMetrics, lines: list[CostLine], start: datetime
) -> None:
    """The bar stamped on day D holds day D's spend (no off-by-one-day shift)."""
    matrix = _query_range(
        vm, _expr(_panel("Daily spend per project")), _ts(start), _ts(NOW), 86400
    )
    got = _day_points(matrix, "project")
    want = _totals(lines, "project")
    assert got[("chat_prod", KNOWN_DAY)] == pytest.approx(
        want[("chat_prod", KNOWN_DAY)]
    )
    for key, value in got.items():
        assert value == pytest.approx(want[key], rel=1e-9), key
    assert ("batch_jobs", date(2025, 3, 17)) in got  # a Monday
    assert ("batch_jobs", date(2025, 3, 18)) not in got


@pytest.mark.vm
def test_project_variable_selects_projects(vm: VictoriaMetrics) -> None:
    """A multi-select value (a|b) limits the bars to those projects."""
    expr = _expr(
        _panel("Daily spend per project"), project="chat_prod|search_embeddings"
    )
    matrix = _query_range(vm, expr, _ts(date(2025, 3, 2)), _ts(NOW), 86400)
    assert {s["metric"]["project"] for s in matrix} == {
        "chat_prod",
        "search_embeddings",
    }


@pytest.mark.vm
def test_line_item_bars(vm: VictoriaMetrics, lines: list[CostLine]) -> None:
    """The line-item bar for day D holds that line item's spend on day D."""
    matrix = _query_range(
        vm,
        _expr(_panel("Daily spend by line item")),
        _ts(date(2025, 3, 2)),
        _ts(NOW),
        86400,
    )
    got = _day_points(matrix, "line_item")
    want = _totals(lines, "line_item")
    item = "gpt-4o-2024-08-06, output"
    assert got[(item, KNOWN_DAY)] == pytest.approx(want[(item, KNOWN_DAY)], rel=1e-9)
    assert got[(item, LAST_DAY)] == pytest.approx(want[(item, LAST_DAY)], rel=1e-9)


@pytest.mark.vm
def test_month_to_date_and_forecast(vm: VictoriaMetrics, lines: list[CostLine]) -> None:
    """Month to date sums the 1st..today; the forecast adds 7-day mean x days left."""
    today = MID_MONTH.date()
    mtd = math.fsum(
        line.value for line in lines if line.day.month == 3 and line.day <= today
    )
    week = math.fsum(
        line.value for line in lines if today - timedelta(7) <= line.day < today
    )
    forecast = mtd + week / 7 * (31 - today.day)
    got_mtd = _scalar(vm.query(_expr(_panel("Month to date")), _ts(MID_MONTH)))
    got_forecast = _scalar(vm.query(_expr(_panel("Forecast")), _ts(MID_MONTH)))
    assert got_mtd == pytest.approx(mtd, rel=1e-9)
    assert got_forecast == pytest.approx(forecast, rel=1e-9)
    # April 1st: March no longer counts.
    april = datetime(2025, 4, 1, 6, tzinfo=UTC)
    assert vm.query(_expr(_panel("Month to date")), _ts(april)) == [] or _scalar(
        vm.query(_expr(_panel("Month to date")), _ts(april))
    ) == pytest.approx(0)


@pytest.mark.vm
def test_today_vs_baseline_table(vm: VictoriaMetrics, lines: list[CostLine]) -> None:
    """The table shows today, the 7-day median, the ratio and the days of history."""
    panel = _panel("Today vs baseline")
    totals = _totals(lines, "project")
    previous = [LAST_DAY - timedelta(d) for d in range(1, 8)]
    today = _by(vm.query(_expr(panel, "A"), _ts(NOW)), "project")
    baseline = _by(vm.query(_expr(panel, "B"), _ts(NOW)), "project")
    ratio = _by(vm.query(_expr(panel, "C"), _ts(NOW)), "project")
    history = _by(vm.query(_expr(panel, "D"), _ts(NOW)), "project")
    days = [totals[("chat_prod", d)] for d in previous]
    assert baseline["chat_prod"] == pytest.approx(statistics.median(days), rel=1e-9)
    assert ratio["chat_prod"] == pytest.approx(
        today["chat_prod"] / statistics.median(days), rel=1e-9
    )
    assert ratio["chat_prod"] > 2.5  # the demo's spike
    assert history["chat_prod"] == 7
    assert history["batch_jobs"] == 1  # Mondays only: insufficient history
    overrides = {o["matcher"]["options"]: o for o in panel["fieldConfig"]["overrides"]}
    mapping = next(
        p["value"][0]
        for p in overrides["history"]["properties"]
        if p["id"] == "mappings"
    )
    assert (
        mapping["options"]["from"] <= history["batch_jobs"] <= mapping["options"]["to"]
    )
    assert mapping["options"]["result"]["text"] == "insufficient history"
    assert not mapping["options"]["from"] <= 3 <= mapping["options"]["to"]


@pytest.mark.vm
def test_pusher_health_panels(vm: VictoriaMetrics) -> None:
    """Pusher health shows the age of the last success and the failed cycles."""
    age = _scalar(vm.query(_expr(_panel("Pusher: since")), _ts(HEALTH_AT)))
    failed = _scalar(vm.query(_expr(_panel("Pusher: failed")), _ts(HEALTH_AT)))
    assert age == pytest.approx(3900)  # last success at 10:45
    assert failed == pytest.approx(4)  # 11:00, 11:15, 11:30, 11:45
    quiet = datetime(2025, 3, 31, 20, tzinfo=UTC)
    assert _scalar(vm.query(_expr(_panel("Pusher: failed")), _ts(quiet))) == 0


@pytest.mark.vm
def test_demo_data_shows_only_when_selected(
    vm: VictoriaMetrics, lines: list[CostLine]
) -> None:
    """By default no panel and no project choice shows the demo's series (the other
    tests check the real numbers with the demo present); with the Data variable on
    the demo, the panels show the demo alone, never added to real spend."""
    spend = _panel("Spend today")
    totals = _totals(lines, "project")
    want = {p: v for (p, day), v in totals.items() if day == LAST_DAY}
    real = _by(vm.query(_expr(spend), _ts(NOW)), "project")
    demo = _by(vm.query(_expr(spend, demo=DEMO), _ts(NOW)), "project")
    assert real.keys() == want.keys() and DEMO_ONLY not in real
    assert demo.keys() == {*want, DEMO_ONLY}
    for project, value in want.items():
        assert demo[project] == pytest.approx(value * DEMO_FACTOR, rel=1e-9), project
    today = MID_MONTH.date()
    march = [x for x in lines if x.day.month == 3 and x.day <= today]
    want_mtd = math.fsum(x.value for x in march) * DEMO_FACTOR
    want_mtd += 500 * len({x.day for x in march})  # DEMO_ONLY's days
    mtd = _panel("Month to date")
    got = _scalar(vm.query(_expr(mtd, demo=DEMO), _ts(MID_MONTH)))
    assert got == pytest.approx(want_mtd, rel=1e-9)
    # The demo's healthy pusher last succeeded at 11:45.
    since = _panel("Pusher: since")
    assert _scalar(vm.query(_expr(since, demo=DEMO), _ts(HEALTH_AT))) == 300
    # The project variable: label_values(openai_daily_cost{$demo}, project).
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    values = variables["project"]["query"]["query"]
    selector = re.fullmatch(r"label_values\((.+), project\)", values)
    assert selector is not None

    def project_values(demo_matcher: str) -> set[str]:
        resp = requests.get(
            f"{vm.url}/api/v1/label/project/values",
            params={
                "match[]": selector.group(1).replace("$demo", demo_matcher),
                "start": str(_ts(date(2025, 3, 1))),
                "end": str(_ts(NOW)),
            },
            timeout=30,
        )
        resp.raise_for_status()
        return set(resp.json()["data"])

    assert project_values(REAL) == {p for p, _day in totals}
    assert project_values(DEMO) == {p for p, _day in totals} | {DEMO_ONLY}


def _month_to_date(lines: list[CostLine], project: str, today: date) -> float:
    """Return a project's seeded spend from the 1st of `today`'s month to `today`."""
    return math.fsum(
        x.value
        for x in lines
        if x.project == project and x.day.month == today.month and x.day <= today
    )


@pytest.mark.vm
def test_spend_against_hard_limit_table(
    vm: VictoriaMetrics, lines: list[CostLine]
) -> None:
    """The table lists each project with a hard limit: the limit, the month to
    date, the share used and whether OpenAI enforces it; no organization row, and
    the demo's limit only with the Data variable on the demo."""
    panel = _panel("Spend against the hard limit")
    at = _ts(MID_MONTH)
    limit = _by(vm.query(_expr(panel, "A"), at), "project")
    spent = _by(vm.query(_expr(panel, "B"), at), "project")
    used = _by(vm.query(_expr(panel, "C"), at), "project")
    enforcing = _by(vm.query(_expr(panel, "D"), at), "project")
    assert limit == {"chat_prod": 2000.0, "search_embeddings": 150.0}
    assert spent.keys() == used.keys() == enforcing.keys() == limit.keys()
    for project in limit:
        want = _month_to_date(lines, project, MID_MONTH.date())
        assert spent[project] == pytest.approx(want, rel=1e-9), project
        assert used[project] == pytest.approx(want / limit[project], rel=1e-9)
    assert enforcing == {"chat_prod": 1.0, "search_embeddings": 0.0}
    overrides = {o["matcher"]["options"]: o for o in panel["fieldConfig"]["overrides"]}
    (mapping,) = next(
        p["value"]
        for p in overrides["enforcement"]["properties"]
        if p["id"] == "mappings"
    )
    texts = {k: v["text"] for k, v in mapping["options"].items()}
    assert texts == {"0": "not enforcing", "1": "enforcing"}
    demo = _by(vm.query(_expr(panel, "A", demo=DEMO), at), "project")
    assert demo == {DEMO_ONLY: 800.0}
    # A project selection narrows the table.
    chat = _by(vm.query(_expr(panel, "C", project="chat_prod"), at), "project")
    assert chat.keys() == {"chat_prod"}


@pytest.mark.vm
def test_api_key_panels(vm: VictoriaMetrics, lines: list[CostLine]) -> None:
    """The per-key bars hold each key's spend of day D on day D; the month table
    sums each key's days of the month so far; the demo's keys stay out."""
    bars = _panel("Daily spend per API key")
    assert bars["interval"] == "1d"
    assert bars["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    matrix = _query_range(vm, _expr(bars), _ts(date(2025, 3, 2)), _ts(NOW), 86400)
    got = _day_points(matrix, "api_key")
    want = _key_lines(lines)
    assert got.keys() == want.keys()
    for point, value in want.items():
        assert got[point] == pytest.approx(value, rel=1e-9), point
    assert {s["metric"]["project"] for s in matrix} == {"chat_prod"}
    month = _panel("Spend per API key")
    today = MID_MONTH.date()
    result = vm.query(_expr(month), _ts(MID_MONTH))
    got_month = _by(result, "api_key")
    for _key_id, key, _share in KEYS:
        want_month = math.fsum(
            v for (k, d), v in want.items() if k == key and d.month == 3 and d <= today
        )
        assert got_month[key] == pytest.approx(want_month, rel=1e-9), key
    assert got_month.keys() == {key for _id, key, _share in KEYS}
    demo = _by(vm.query(_expr(month, demo=DEMO), _ts(MID_MONTH)), "api_key")
    assert demo["prod-server"] == pytest.approx(
        got_month["prod-server"] * DEMO_FACTOR, rel=1e-9
    )


def _node_tools() -> Path:
    """Install or find the pinned typescript and @grafana/schema; return the folder."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-node-tools.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (
        "scripts/fetch-node-tools.sh failed (needs node and npm):\n" + done.stderr
    )
    return Path(done.stdout.strip().splitlines()[-1])


def _tsc(dashboard_json: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Type-check `dashboard_json` as `satisfies Dashboard` with tsc."""
    tools = _node_tools()
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(tools / "node_modules")
    source = workdir / "dashboard.ts"
    source.write_text(
        "import type { Dashboard } from '@grafana/schema';\n\n"
        f"export const dashboard = {dashboard_json.rstrip()} satisfies Dashboard;\n"
    )
    return subprocess.run(
        [
            str(tools / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "--target",
            "es2022",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_dashboard_satisfies_grafana_schema(tmp_path: Path) -> None:
    """The dashboard JSON type-checks as a @grafana/schema Dashboard."""
    done = _tsc(DASHBOARD.read_text(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("refresh_rate",), "1m", "'\"refresh_rate\"' does not exist"),
        (("panels", 0, "gridPos", "h"), "eight", "not assignable to type 'number'"),
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_schema_check_catches_a_bad_dashboard(
    tmp_path: Path, path: tuple[str | int, ...], value: str, message: str
) -> None:
    """A copy with a misspelt field or a wrongly typed value fails the same check."""
    broken = json.loads(DASHBOARD.read_text())
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    done = _tsc(json.dumps(broken, indent=2), tmp_path)
    assert done.returncode != 0
    assert message in done.stdout, done.stdout


def test_configmap_carries_the_dashboard() -> None:
    """The sidecar ConfigMap is generated from the JSON and labelled for Grafana."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-grafana-configmap.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    embedded = configmap["data"]["openai-costs-dashboard.json"]
    assert json.loads(embedded) == json.loads(DASHBOARD.read_text())
