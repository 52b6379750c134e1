"""Spend limits and spend alerts: parsing, samples, and cycles through the fake Admin
API into a real VictoriaMetrics, read back.

The gauges `openai_spend_limit` and `openai_spend_alert_threshold` are optional: a
refused, unset or malformed read leaves out its own series only and never fails the
cycle, and the costs still land.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

import pytest

from openai_cost_pusher.app import Pusher
from openai_cost_pusher.config import Secret, load_settings
from openai_cost_pusher.demo import DemoOrganization
from openai_cost_pusher.errors import BadResponse, ConfigError, CostPusherError
from openai_cost_pusher.metrics import SelfStats
from openai_cost_pusher.model import Sample
from openai_cost_pusher.openai_api import AdminApi, _spend_path
from openai_cost_pusher.push import VmClient
from openai_cost_pusher.spend_limits import (
    MAX_THRESHOLD_CENTS,
    SpendAlert,
    SpendLimit,
    Unread,
    parse_spend_alerts_page,
    parse_spend_limit,
    spend_samples,
)
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI, Fault
from tests.orgs import DAY, assert_equal_costs, fake_costs, vm_costs
from tests.vm import ExportedSeries, VictoriaMetrics

ORG_WHERE = "GET /organization/spend_limit"
PROJ_WHERE = "GET /organization/projects/proj_a/spend_limit"
LIMIT_METRIC = '{__name__="openai_spend_limit"}'
ALERT_METRIC = '{__name__="openai_spend_alert_threshold"}'


def _limit_doc(scope: str = "organization", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "object": f"{scope}.spend_limit",
        "threshold_amount": 150_075,
        "currency": "USD",
        "interval": "month",
        "enforcement": {"status": "enforcing"},
    }
    doc.update(over)
    return doc


def _alerts_doc(*alerts: dict[str, Any], **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "object": "list",
        "data": list(alerts),
        "first_id": alerts[0]["id"] if alerts else None,
        "last_id": alerts[-1]["id"] if alerts else None,
        "has_more": False,
    }
    doc.update(over)
    return doc


def _alert(alert_id: str = "alrt_1", scope: str = "organization", **over: Any) -> Any:
    doc: dict[str, Any] = {
        "id": alert_id,
        "object": f"{scope}.spend_alert",
        "threshold_amount": 200_000,
        "currency": "USD",
        "interval": "month",
        "notification_channel": {"type": "email", "recipients": ["a@example.com"]},
    }
    doc.update(over)
    return doc


# ------------------------------------------------------------------------- parsing


def test_a_limit_is_parsed_in_cents_with_the_currency_lower_cased() -> None:
    """The organization's and a project's limits keep cents, status and currency."""
    assert parse_spend_limit(_limit_doc(), ORG_WHERE) == SpendLimit(
        "organization", "", 150_075, "usd", "enforcing"
    )
    doc = _limit_doc("project", enforcement={"status": "Paused by admin"})
    assert parse_spend_limit(doc, PROJ_WHERE, "proj_a") == SpendLimit(
        "project", "proj_a", 150_075, "usd", "Paused by admin"
    )


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"threshold_amount": None}, Unread.NOT_CONFIGURED),
        (
            {"threshold_amount": 0, "enforcement": {"status": "inactive"}},
            Unread.NOT_CONFIGURED,
        ),
        (
            {"threshold_amount": 0},
            SpendLimit("organization", "", 0, "usd", "enforcing"),
        ),
        (
            {"enforcement": {"status": "inactive"}},
            SpendLimit("organization", "", 150_075, "usd", "inactive"),
        ),
    ],
)
def test_no_limit_answers(over: dict[str, Any], expected: object) -> None:
    """A null threshold, or 0 not enforcing, is no limit; an enforcing 0 stops all
    traffic and is a limit; an inactive limit is still a limit."""
    assert parse_spend_limit(_limit_doc(**over), ORG_WHERE) == expected


HOSTILE_LIMITS: list[tuple[object, str]] = [
    ([], f"{ORG_WHERE}: expected an object, got list"),
    (_limit_doc(object="organization.spend_alert"), f"{ORG_WHERE}.object"),
    (_limit_doc(threshold_amount="1500"), f"{ORG_WHERE}.threshold_amount"),
    (_limit_doc(threshold_amount=True), f"{ORG_WHERE}.threshold_amount"),
    (_limit_doc(threshold_amount=1.5), f"{ORG_WHERE}.threshold_amount"),
    (_limit_doc(threshold_amount=10**400), f"{ORG_WHERE}.threshold_amount"),
    (_limit_doc(threshold_amount=-1), f"{ORG_WHERE}.threshold_amount"),
    (
        _limit_doc(threshold_amount=MAX_THRESHOLD_CENTS + 1),
        f"{ORG_WHERE}.threshold_amount",
    ),
    (_limit_doc(currency=5), f"{ORG_WHERE}.currency"),
    (_limit_doc(currency=""), f"{ORG_WHERE}.currency"),
    (_limit_doc(currency="U\nSD"), f"{ORG_WHERE}.currency"),
    (_limit_doc(currency="x" * 1000), f"{ORG_WHERE}.currency"),
    (_limit_doc(interval=None), f"{ORG_WHERE}.interval"),
    (_limit_doc(enforcement="enforcing"), f"{ORG_WHERE}.enforcement"),
    (_limit_doc(enforcement={}), f"{ORG_WHERE}.enforcement.status: missing"),
    (_limit_doc(enforcement={"status": ["x"] * 99}), "enforcement.status"),
    ({"object": "organization.spend_limit"}, f"{ORG_WHERE}.threshold_amount: missing"),
]


@pytest.mark.parametrize(("body", "path"), HOSTILE_LIMITS)
def test_a_hostile_limit_is_one_line_naming_the_field(body: object, path: str) -> None:
    """Wrong types, huge thresholds, non-string currencies: one short line each."""
    with pytest.raises(BadResponse) as caught:
        parse_spend_limit(body, ORG_WHERE)
    message = str(caught.value)
    assert path in message
    assert "\n" not in message
    assert len(message) < 250


def test_an_alert_page_is_parsed() -> None:
    """Alerts keep id, cents and the lower-cased currency; the cursor is returned."""
    body = _alerts_doc(
        _alert("a1", "project"),
        _alert("a2", "project", threshold_amount=5, currency="Eur"),
        has_more=True,
    )
    alerts, more, last = parse_spend_alerts_page(body, "GET x", "proj_a")
    assert alerts == [
        SpendAlert("project", "proj_a", "a1", 200_000, "usd"),
        SpendAlert("project", "proj_a", "a2", 5, "eur"),
    ]
    assert (more, last) == (True, "a2")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (_alerts_doc(data={}), "GET x.data: expected an array"),
        (_alerts_doc(has_more="no"), "GET x.has_more"),
        (_alerts_doc(object="page"), "GET x.object"),
        (_alerts_doc(last_id=7), "GET x.last_id"),
        (_alerts_doc(last_id="x" * 5000), "GET x.last_id"),
        (_alerts_doc(_alert(id=12), last_id=None), "GET x.data[0].id"),
        (_alerts_doc(_alert(id=""), last_id=None), "GET x.data[0].id"),
        (_alerts_doc(_alert(threshold_amount=1e300)), "data[0].threshold_amount"),
        (_alerts_doc(_alert(threshold_amount=10**20)), "data[0].threshold_amount"),
        (_alerts_doc(_alert(currency={"code": "USD"})), "GET x.data[0].currency"),
        (_alerts_doc(_alert(object="project.spend_alert")), "GET x.data[0].object"),
        (
            _alerts_doc(_alert(), last_id="alrt_1", data=[_alert(), "oops"]),
            "GET x.data[1]: expected an object",
        ),
    ],
)
def test_a_hostile_alert_page_is_one_line_naming_the_field(
    body: object, path: str
) -> None:
    """Every malformed alert page names its field in one line."""
    with pytest.raises(BadResponse) as caught:
        parse_spend_alerts_page(body, "GET x")
    assert path in str(caught.value)
    assert "\n" not in str(caught.value)


def test_samples_carry_units_labels_and_push_time() -> None:
    """Cents become units; the organization has empty project labels; the project
    label is the normalized name the cost series use."""
    samples = spend_samples(
        [
            SpendLimit("organization", "", 500_000, "usd", "inactive"),
            SpendLimit("project", "proj_a", 150_075, "usd", "enforcing"),
        ],
        [
            SpendAlert("project", "proj_a", "a1", 99, "usd"),
            SpendAlert("project", "proj_a", "a1", 99, "usd"),  # served twice: once
        ],
        {"proj_a": "Team A / Chat"},
        (("job", "t"),),
        1_700_000_000_123,
    )
    assert samples == [
        Sample(
            "openai_spend_limit",
            (
                ("currency", "usd"),
                ("enforcement", "inactive"),
                ("job", "t"),
                ("project", ""),
                ("project_id", ""),
                ("scope", "organization"),
            ),
            5000.0,
            1_700_000_000_123,
        ),
        Sample(
            "openai_spend_limit",
            (
                ("currency", "usd"),
                ("enforcement", "enforcing"),
                ("job", "t"),
                ("project", "team_a_chat"),
                ("project_id", "proj_a"),
                ("scope", "project"),
            ),
            1500.75,
            1_700_000_000_123,
        ),
        Sample(
            "openai_spend_alert_threshold",
            (
                ("alert_id", "a1"),
                ("currency", "usd"),
                ("job", "t"),
                ("project", "team_a_chat"),
                ("project_id", "proj_a"),
                ("scope", "project"),
            ),
            0.99,
            1_700_000_000_123,
        ),
    ]


# ------------------------------------------------------------------------ settings


def _settings(**env: str) -> Any:
    return load_settings({}, {"OPENAI_ADMIN_KEY": "sk-admin-x", **env}, {}, str)


def test_settings_default_on_hourly_and_refuse_other_periods() -> None:
    """On by default, every 3600 s; SPEND_LIMITS=false turns it off; the refresh is
    3600 to 5400 seconds, each bad value one line."""
    default = _settings()
    assert (default.spend_limits, default.spend_limits_refresh_s) == (True, 3600)
    assert _settings(SPEND_LIMITS="false").spend_limits is False
    assert _settings(SPEND_LIMITS_REFRESH_SECONDS="5400").spend_limits_refresh_s == 5400
    for bad in ("600", "7200", "1h", "x"):
        with pytest.raises(ConfigError) as caught:
            _settings(SPEND_LIMITS_REFRESH_SECONDS=bad)
        assert caught.value.problems[0].startswith("SPEND_LIMITS_REFRESH_SECONDS: ")
    with pytest.raises(ConfigError) as caught:
        _settings(SPEND_LIMITS="maybe")
    assert caught.value.problems == [
        "SPEND_LIMITS: expected true or false, got 'maybe'"
    ]
    with pytest.raises(ConfigError):
        _settings(EXTRA_LABELS="scope=x")


# ------------------------------------------------------------- through the cycle


def _pusher(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    *,
    spend: bool = True,
    sleeps: list[float] | None = None,
    budget_s: float = 120.0,
    monotonic: Any = None,
) -> Pusher:
    """Return a pusher like `tests.orgs.make_pusher`, reading spend limits too."""
    stop = threading.Event()
    recorded = sleeps if sleeps is not None else []
    stats = SelfStats(version="test")
    api = AdminApi(
        make_session(),
        fake.base_url,
        Secret(fake.admin_key),
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        count_request=stats.count_request,
        retrying=lambda: retry_policy(120, stop, sleep=recorded.append),
    )
    client = VmClient(
        make_session(),
        vm.push_url,
        authorization=None,
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        retrying=lambda: retry_policy(120, stop, sleep=recorded.append, max_attempts=2),
    )
    extra: dict[str, Any] = {} if monotonic is None else {"monotonic": monotonic}
    return Pusher(
        api,
        client,
        lookback_days=3,
        backfill_days=5,
        extra_labels=(("job", "test"),),
        clock=clock,
        stats=stats,
        spend=api if spend else None,
        spend_budget_s=budget_s,
        **extra,
    )


def _seed(fake: FakeOpenAI, today: int) -> None:
    """Projects with and without limits and alerts, and a few days of costs."""
    fake.add_project("proj_a", "Team A / Chat")
    fake.add_project("proj_b", "No Limit")
    fake.add_project("proj_old", "Old", archived=True)
    fake.set_spend_limit(None, 500_000, enforcement="inactive")
    fake.set_spend_limit("proj_a", 150_075)
    fake.set_spend_limit("proj_old", 1_000)  # archived: never read
    fake.spend_alert_page_size = 2
    for n in range(5):
        fake.add_spend_alert(None, f"org_alert_{n}", 100_000 * (n + 1))
    fake.add_spend_alert("proj_a", "chat_alert", 99_999, currency="USD")
    for day in range(today - 5 * DAY, today + DAY, DAY):
        fake.set_cost(day, "proj_a", "gpt-4o, input", 12.5 + day % 7)
        fake.set_cost(day, "proj_b", "gpt-4o, output", 3.25)


def _by_labels(series: list[ExportedSeries]) -> dict[tuple[tuple[str, str], ...], Any]:
    return {
        tuple(sorted((k, v) for k, v in s.metric.items() if k != "__name__")): s
        for s in series
    }


def _spend_requests(fake: FakeOpenAI) -> list[str]:
    return [r.path for r in fake.requests if "/spend_" in r.path]


def test_limits_and_alerts_land_as_gauges(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """One cycle pushes the organization's and each active project's limit and every
    alert (all pages), in currency units, lower-cased currency, stamped at push time;
    a project without a limit, and an archived one, have no series."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today)
    pusher = _pusher(fake, vm, clock)
    report = pusher.run_cycle()
    assert report.ok, report.error
    assert_equal_costs(
        fake_costs(fake, today - 5 * DAY, today + DAY), vm_costs(vm, None)
    )
    now_ms = int(clock.now * 1000)
    limits = _by_labels(vm.export(LIMIT_METRIC))
    org = (
        ("currency", "usd"),
        ("enforcement", "inactive"),
        ("job", "test"),
        ("scope", "organization"),
    )
    chat = (
        ("currency", "usd"),
        ("enforcement", "enforcing"),
        ("job", "test"),
        ("project", "team_a_chat"),
        ("project_id", "proj_a"),
        ("scope", "project"),
    )
    assert set(limits) == {org, chat}
    assert (limits[org].values, limits[org].timestamps) == ([5000.0], [now_ms])
    assert (limits[chat].values, limits[chat].timestamps) == ([1500.75], [now_ms])
    alerts = {
        (s.metric["scope"], s.metric.get("project", ""), s.metric["alert_id"]): (
            s.values,
            s.metric["currency"],
        )
        for s in vm.export(ALERT_METRIC)
    }
    assert alerts == {
        **{
            ("organization", "", f"org_alert_{n}"): ([1000.0 * (n + 1)], "usd")
            for n in range(5)
        },
        ("project", "team_a_chat", "chat_alert"): ([999.99], "usd"),
    }
    # 2 + 2 per active project, plus two more pages of the organization's alerts
    paths = _spend_requests(fake)
    assert len(paths) == 2 + 2 * 2 + 2
    assert not any("proj_old" in p for p in paths)
    after = [r.param("after") for r in fake.requests_to("/organization/spend_alerts")]
    assert after == [None, "org_alert_1", "org_alert_3"]
    assert pusher.stats.last_success["spend_limits"] == clock.now


def test_refresh_happens_at_most_once_per_interval(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Cycles every 15 minutes read the limits at 0 and 3600 s only, and each read
    pushes the series again, stamped then; a removed limit's series stops."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today)
    pusher = _pusher(fake, vm, clock)
    start = clock.now
    reads: list[int] = []
    for step in range(6):
        clock.now = start + 900 * step
        if step == 4:
            fake.set_spend_limit("proj_a", None)  # removed before the second read
        before = len(_spend_requests(fake))
        assert pusher.run_cycle().ok
        reads.append(len(_spend_requests(fake)) - before)
    assert reads == [8, 0, 0, 0, 8, 0]
    limits = {s.metric.get("project_id", ""): s for s in vm.export(LIMIT_METRIC)}
    assert limits[""].timestamps == [int(start * 1000), int((start + 3600) * 1000)]
    assert limits["proj_a"].timestamps == [int(start * 1000)]
    live = vm.query("last_over_time(openai_spend_limit[2h])", at=start + 3600)
    assert {r["metric"].get("project_id", "") for r in live} == {"", "proj_a"}
    later = vm.query("last_over_time(openai_spend_limit[2h])", at=start + 3600 + 7201)
    assert later == []


def test_refused_reads_are_said_once_and_the_cycle_succeeds(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """403 on the spend reads: one WARNING, no spend series, costs pushed, at most
    one request per kind of read and refresh, and /healthz names the refusals."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today)
    fake.spend_refused = True
    pusher = _pusher(fake, vm, clock)
    with caplog.at_level(logging.DEBUG, logger="openai_cost_pusher"):
        first = pusher.run_cycle()
        clock.now += 3600
        second = pusher.run_cycle()
    assert first.ok and second.ok, (first.error, second.error)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "spend" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "HTTP 403" in warnings[0]
    assert fake.admin_key not in caplog.text
    assert vm.export(LIMIT_METRIC) == [] and vm.export(ALERT_METRIC) == []
    assert vm_costs(vm, None)
    assert len(_spend_requests(fake)) == 2 * 4
    notes = pusher.health(900).notes
    assert (
        "project spend limits not read: the admin key lacks the scope (HTTP 403)"
        in (notes)
    )
    assert len([n for n in notes if "HTTP 403" in n]) == 4


HOSTILE_ANSWERS = [
    _limit_doc("project", threshold_amount=10**30),
    _limit_doc("project", threshold_amount="150000"),
    _limit_doc("project", currency=840),
    {"object": "list", "data": "oops"},
]


@pytest.mark.parametrize("body", HOSTILE_ANSWERS)
def test_a_hostile_answer_leaves_out_its_series_only(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    body: object,
) -> None:
    """A malformed project limit: one one-line WARNING naming the field, no series
    for it, the other series and the costs pushed, the cycle a success."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today)
    fake.inject(
        Fault.wrong_shape(body), path_prefix="/organization/projects/proj_a/spend_limit"
    )
    pusher = _pusher(fake, vm, clock)
    with caplog.at_level(logging.WARNING, logger="openai_cost_pusher"):
        report = pusher.run_cycle()
    assert report.ok, report.error
    failed = [r for r in caplog.records if "spend limit read failed" in r.getMessage()]
    assert len(failed) == 1
    message = failed[0].getMessage()
    assert "GET /organization/projects/proj_a/spend_limit" in message
    assert "\n" not in message and failed[0].exc_info is None
    limits = {s.metric.get("project_id", "") for s in vm.export(LIMIT_METRIC)}
    assert limits == {""}
    assert len(vm.export(ALERT_METRIC)) == 6
    assert_equal_costs(
        fake_costs(fake, today - 5 * DAY, today + DAY), vm_costs(vm, None)
    )


def test_a_lasting_rate_limit_pauses_the_reads_until_the_next_cycle(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """A rate limit that outlasts the retries stops the spend reads for this cycle
    (the costs landed before them); the next cycle carries on where they stopped,
    without starting a new refresh."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today)
    sleeps: list[float] = []
    fake.inject(
        Fault.rate_limited(retry_after=1),
        path_prefix="/organization/projects/proj_a/spend_alerts",
        times=8,
    )
    pusher = _pusher(fake, vm, clock, sleeps=sleeps)
    assert pusher.run_cycle().ok
    assert sleeps and all(s >= 1 for s in sleeps)
    done = [p.rsplit("/", 2)[-2:] for p in _spend_requests(fake)]
    assert ["proj_b", "spend_limit"] not in done
    assert {s.metric.get("project_id", "") for s in vm.export(LIMIT_METRIC)} == {
        "",
        "proj_a",
    }
    fake.clear_requests()
    clock.now += 900
    assert pusher.run_cycle().ok
    assert [p.rsplit("/", 2)[-2:] for p in _spend_requests(fake)] == [
        ["proj_b", "spend_limit"],
        ["proj_b", "spend_alerts"],
    ]
    assert vm_costs(vm, None)


def test_a_failed_push_is_pushed_again_next_cycle_without_reading_again(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With VictoriaMetrics down, the limits read are kept; the next cycle pushes
    them, stamped then, without asking the API again."""
    _seed(fake, int(clock.now) // DAY * DAY)
    pusher = _pusher(fake, vm, clock)
    vm.stop()
    with caplog.at_level(logging.WARNING, logger="openai_cost_pusher"):
        pusher.run_cycle()
    assert "spend limits not pushed" in caplog.text
    assert "spend_limits" not in pusher.stats.last_success
    vm.restart()
    fake.clear_requests()
    clock.now += 900
    assert pusher.run_cycle().ok
    assert _spend_requests(fake) == []
    limits = vm.export(LIMIT_METRIC)
    assert len(limits) == 2
    assert all(s.timestamps == [int(clock.now * 1000)] for s in limits)
    assert len(vm.export(ALERT_METRIC)) == 6


def test_the_step_budget_spreads_a_refresh_over_cycles(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """With the step's time spent after each read, one read a cycle goes out and
    the refresh goes on over the following cycles, each read once."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today)
    ticks = itertools.count(0, 1000)  # every look at the clock: 1000 s later
    pusher = _pusher(fake, vm, clock, budget_s=1.0, monotonic=lambda: next(ticks))
    counts = []
    for _ in range(7):
        before = len(_spend_requests(fake))
        assert pusher.run_cycle().ok
        counts.append(len(_spend_requests(fake)) - before)
        clock.now += 60
    # org limit; org alerts (3 pages); proj_a limit, alerts; proj_b limit, alerts
    assert counts == [1, 3, 1, 1, 1, 1, 0]


def _api(fake: FakeOpenAI) -> AdminApi:
    stop = threading.Event()
    return AdminApi(
        make_session(),
        fake.base_url,
        Secret(fake.admin_key),
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        retrying=lambda: retry_policy(10, stop, sleep=lambda s: None),
    )


def test_the_client_maps_403_and_404_and_bounds_the_alert_pages(
    fake: FakeOpenAI,
) -> None:
    """404 is "not configured", 403 "refused", on the first page only; a later page
    refused, or a cursor served twice, is a one-line bad answer; 401 still fails."""
    api = _api(fake)
    fake.add_project("proj_b", "No limit")
    assert api.fetch_spend_limit("proj_b") is Unread.NOT_CONFIGURED
    assert _spend_path("p/1 x", "spend_limit") == (
        "/organization/projects/p%2F1%20x/spend_limit"
    )
    fake.inject(Fault(status=404), path_prefix="/organization/spend_alerts")
    assert api.fetch_spend_alerts() is Unread.NOT_CONFIGURED
    fake.inject(Fault(status=403), path_prefix="/organization/spend_alerts")
    assert api.fetch_spend_alerts() is Unread.REFUSED
    for n in range(3):
        fake.add_spend_alert(None, f"a{n}", 100)
    fake.spend_alert_page_size = 1
    alerts = api.fetch_spend_alerts()
    assert isinstance(alerts, list)
    assert [a.alert_id for a in alerts] == ["a0", "a1", "a2"]
    page = _alerts_doc(_alert("a0"), has_more=True)
    fake.inject(Fault.wrong_shape(page), path_prefix="/organization/spend_alerts")
    fake.inject(Fault.wrong_shape(page), path_prefix="/organization/spend_alerts")
    with pytest.raises(BadResponse, match=r"last_id: repeats 'a0' after 2 pages"):
        api.fetch_spend_alerts()
    fake.clear_faults()
    fake.inject(Fault.wrong_shape(page), path_prefix="/organization/spend_alerts")
    fake.inject(Fault(status=403), path_prefix="/organization/spend_alerts")
    with pytest.raises(BadResponse, match="a later page is answered as refused"):
        api.fetch_spend_alerts()
    fake.inject(Fault.unauthorized(), path_prefix="/organization/spend_limit")
    with pytest.raises(CostPusherError, match="HTTP 401"):
        api.fetch_spend_limit()


def test_off_reads_nothing(fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock) -> None:
    """Without a spend source (SPEND_LIMITS=false) no spend read is made."""
    _seed(fake, int(clock.now) // DAY * DAY)
    assert _pusher(fake, vm, clock, spend=False).run_cycle().ok
    assert _spend_requests(fake) == []


def test_the_demo_has_limits_and_alerts() -> None:
    """The demo organization serves a limit for the organization and two projects,
    alerts, and no limit for the others."""
    demo = DemoOrganization(lambda: 1_700_000_000.0)
    org = demo.fetch_spend_limit()
    assert isinstance(org, SpendLimit) and org.scope == "organization"
    assert demo.fetch_spend_limit("proj_demo_eval") is Unread.NOT_CONFIGURED
    chat = demo.fetch_spend_limit("proj_demo_chat")
    assert isinstance(chat, SpendLimit) and chat.enforcement == "enforcing"
    alerts = demo.fetch_spend_alerts()
    assert isinstance(alerts, list) and len(alerts) == 2
    assert demo.fetch_spend_alerts("proj_demo_eval") == []
