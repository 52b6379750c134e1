"""End to end with the real pusher: pusher -> VictoriaMetrics -> vmalert -> Slack.

Unlike `test_alert_rules.py`, which pushes a seeded history by hand, these tests let
`python -m openai_cost_pusher --once` write the series, so the metric contract, the
shipped rules and the Alertmanager config are checked together. The chain runs on real
binaries on 127.0.0.1 (`tests/alerting.py`); the fake Admin API and the demo use the
real clock, so "today" is the current UTC day; a run that spans 00:00 UTC may fail.
"""

from __future__ import annotations

import calendar
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.alerting import (
    DEMO_SWITCH,
    OVERRIDES,
    RULES,
    SlackDelivery,
    Stoppable,
    VmAlert,
    deliver_to_slack,
)
from tests.fake_openai import FakeOpenAI
from tests.test_cli import run_cli
from tests.vm import VictoriaMetrics

DAY = 86_400
HISTORY_DAYS = 30  # today included, as the pusher's default BACKFILL_DAYS
SPIKE_RATIO = 1.5  # openai_cost:spike_ratio:default
SPIKE_FLOOR = 5.0  # openai_cost:spike_min_spend:default
DAILY_BUDGET = 100.0  # openai_cost:daily_budget:default
MONTHLY_BUDGET = 3000.0  # openai_cost:monthly_budget:default
NEAR_RATIO = 0.8  # openai_cost:spend_limit_near_ratio:default
LAST_SUCCESS = 'openai_cost_pusher_last_success_timestamp_seconds{dataset="costs"}'
EVALUATION_INTERVAL = 2.0  # s: VmAlert's default in tests/alerting.py
FIRST_MESSAGE_WITHIN = 20.0  # s: ten 2 s evaluations (9 to 11 s seen), 1 s group_wait


@dataclass(frozen=True)
class SeededProject:
    """A project of the fake organization with its typical daily line items."""

    project_id: str
    name: str
    normalized: str
    items: Mapping[str, float]
    today_factor: float = 1.0  # today's spend against the project's baseline


# Several projects: alpha spikes 4x today; gamma rises 1.3x (under the 1.5 ratio);
# beta is steady; legacy is archived and stopped 10 days ago; some costs have no
# project. Every project stays under the daily budget, the organization under the
# monthly one.
PROJECTS = (
    SeededProject(
        "proj_alpha",
        "Alpha Chat",
        "alpha_chat",
        {"gpt-4o, input": 6.0, "gpt-4o, output": 9.0, "gpt-4o-mini, input": 1.0},
        today_factor=4.0,
    ),
    SeededProject(
        "proj_beta",
        "Beta Search",
        "beta_search",
        {"text-embedding-3-small": 3.0, "gpt-4o-mini, output": 5.0},
    ),
    SeededProject(
        "proj_gamma",
        "Gamma Eval/Test",
        "gamma_eval_test",
        {"gpt-4o, input": 4.0, "gpt-4o, output": 4.0},
        today_factor=1.3,
    ),
    SeededProject("proj_legacy", "Legacy Batch", "legacy_batch", {"gpt-4o": 7.0}),
)
UNATTRIBUTED = {"fine-tuning training": 0.5}
LEGACY_STOPPED_DAYS_AGO = 10


def _history(today: int) -> dict[tuple[int, str | None, str], float]:
    """Return the organization's costs: (day, project id, line item) -> USD.

    Past days are each item's typical value +-10 % (two decimals, fixed seed). Today
    each project's items are scaled so that its total is `today_factor` times the
    median of its 7 previous days' totals (a normal day: `today_factor` 1).
    """
    rng = random.Random(20261122)
    costs: dict[tuple[int, str | None, str], float] = {}
    days = [today - (HISTORY_DAYS - 1 - i) * DAY for i in range(HISTORY_DAYS)]
    for project in PROJECTS:
        for day in days[:-1]:
            if project.project_id == "proj_legacy" and (
                day > today - LEGACY_STOPPED_DAYS_AGO * DAY
            ):
                continue
            for item, usual in project.items.items():
                value = round(usual * rng.uniform(0.9, 1.1), 2)
                costs[(day, project.project_id, item)] = value
        totals = _day_totals(costs, project.project_id)
        baseline = _median_before(totals, today)
        if project.project_id == "proj_legacy":
            continue
        usual_total = sum(project.items.values())
        for item, usual in project.items.items():
            share = usual / usual_total
            costs[(today, project.project_id, item)] = round(
                baseline * project.today_factor * share, 2
            )
    for day in days:
        for item, usual in UNATTRIBUTED.items():
            costs[(day, None, item)] = round(usual * rng.uniform(0.9, 1.1), 2)
    return costs


def _day_totals(
    costs: Mapping[tuple[int, str | None, str], float], project_id: str | None
) -> dict[int, float]:
    """Return one project's spend per day: the sum over its line items."""
    totals: dict[int, float] = defaultdict(float)
    for (day, pid, _item), value in costs.items():
        if pid == project_id:
            totals[day] += value
    return dict(totals)


def _median_before(totals: Mapping[int, float], today: int) -> float:
    """Return the median of the 7 days before `today` that have a total (0 if none)."""
    week = [totals[d] for d in range(today - 7 * DAY, today, DAY) if d in totals]
    return statistics.median(week) if week else 0.0


def _run_pusher(vm: VictoriaMetrics, args: list[str], cwd: Path, **env: str) -> None:
    """Run `python -m openai_cost_pusher --once ...` and wait until vmalert can see it.

    vmalert aligns each evaluation time down to its interval, and its first evaluation
    runs as it starts: a sample stamped at push time is then still in the future, and
    OpenAICostPusherStale (no `for`) would fire at once on the absent series. So wait,
    at most 10 s, until the last success is visible one interval in the past.
    """
    result = run_cli(["--once", *args], cwd, {"VM_PUSH_URL": vm.push_url, **env})
    assert result.returncode == 0, result.stderr
    query = f"last_over_time({LAST_SUCCESS}[1d])"
    deadline = time.monotonic() + 10
    while not vm.query(query, at=time.time() - EVALUATION_INTERVAL):
        assert time.monotonic() < deadline, "no costs success sample in 10 s"
        time.sleep(0.2)


def _slack_texts(delivery: SlackDelivery) -> list[str]:
    """Return each Slack message as its title and text."""
    out = []
    for payload in delivery.payloads:
        attachment = payload["attachments"][0]
        out.append(attachment["title"] + "\n" + attachment["text"])
    return out


def _firing(delivery: SlackDelivery) -> set[tuple[str, str | None]]:
    """Return what vmalert was firing at the end as (alertname, project)."""
    return {(a["name"], a["labels"].get("project")) for a in delivery.firing}


def _start_fake(started: list[Stoppable], today: int) -> FakeOpenAI:
    """Start the fake Admin API on the real clock with the seeded organization."""
    fake = FakeOpenAI(page_size=4).start()
    started.append(fake)
    for project in PROJECTS:
        archived = project.project_id == "proj_legacy"
        fake.add_project(
            project.project_id,
            project.name,
            archived=archived,
            archived_at=today - 5 * DAY if archived else None,
        )
    for (day, project_id, item), value in _history(today).items():
        fake.set_cost(day, project_id, item, value)
    return fake


@pytest.mark.vm
@pytest.mark.slow
def test_real_pusher_spike_reaches_slack_for_that_project_only(
    tmp_path: Path, started: list[Stoppable]
) -> None:
    """The real pusher's data brings alpha_chat's spike, and nothing else, to Slack."""
    today = int(time.time()) // DAY * DAY
    fake = _start_fake(started, today)
    costs = _history(today)
    alpha = _day_totals(costs, "proj_alpha")
    spend, baseline = alpha[today], _median_before(alpha, today)
    for project in PROJECTS[1:]:  # the premise: nobody else crosses the rule
        totals = _day_totals(costs, project.project_id)
        other = totals.get(today, 0.0)
        assert other < SPIKE_FLOOR or other < SPIKE_RATIO * _median_before(
            totals, today
        ), project

    def run_pusher(vm: VictoriaMetrics) -> None:
        _run_pusher(
            vm,
            [],
            tmp_path,
            OPENAI_ADMIN_KEY=fake.admin_key,
            OPENAI_BASE_URL=fake.base_url,
            RETRY_BUDGET="10s",
            HTTP_TIMEOUT="5s",
        )

    delivery = deliver_to_slack(tmp_path, started, seed=run_pusher)
    texts = _slack_texts(delivery)
    assert texts, "no Slack message arrived within 60 s"
    assert len(texts) == 1, texts
    text = texts[0]
    assert text.startswith(":rotating_light: OpenAICostSpendSpike: alpha_chat\n"), text
    assert "*Project:* `alpha_chat` (proj_alpha)" in text, text
    assert f"*Spend today (UTC):* {spend:.2f} usd" in text, text
    assert f"*Baseline (median of the 7 previous days):* {baseline:.2f} usd" in text
    ratio = float(text.split("*Ratio:* ")[1].split("x")[0])
    assert ratio == pytest.approx(spend / baseline, abs=0.006), text
    assert _firing(delivery) == {("OpenAICostSpendSpike", "alpha_chat")}
    assert delivery.first_after < FIRST_MESSAGE_WITHIN, delivery.first_after


@pytest.mark.vm
@pytest.mark.slow
def test_real_pusher_spend_limits_reach_slack(
    tmp_path: Path, started: list[Stoppable]
) -> None:
    """The real pusher's hard limits and spend alerts (cents and "USD" at the Admin
    API) reach the rules: beta_search's enforcing limit, set just under its month to
    date, makes the limit-forecast (reached today) and near messages, and the
    organization's spend alert just under its month to date one message; beta's
    budget alert fires but is inhibited; gamma_eval_test's limit is not enforced, so
    it makes its budget alert only; alpha_chat's spike still arrives."""
    today = int(time.time()) // DAY * DAY
    fake = _start_fake(started, today)
    costs = _history(today)
    beta = _Scope("beta_search", _day_totals(costs, "proj_beta"))
    org_days: dict[int, float] = defaultdict(float)
    for (day, _pid, _item), value in costs.items():
        org_days[day] += value
    org = _Scope(None, org_days)
    limit_cents = int(beta.month_to_date(today) * 100) - 100
    fake.set_spend_limit("proj_beta", limit_cents, enforcement="enforcing")
    fake.set_spend_limit("proj_gamma", 1, enforcement="inactive")
    alert_cents = int(org.month_to_date(today) * 100) - 100
    fake.add_spend_alert(None, "spend_alert_org", alert_cents)
    fake.add_spend_alert(None, "spend_alert_later", alert_cents + 1_000_000)

    def run_pusher(vm: VictoriaMetrics) -> None:
        _run_pusher(
            vm,
            [],
            tmp_path,
            OPENAI_ADMIN_KEY=fake.admin_key,
            OPENAI_BASE_URL=fake.base_url,
            RETRY_BUDGET="10s",
            HTTP_TIMEOUT="5s",
        )

    delivery = deliver_to_slack(tmp_path, started, seed=run_pusher, expect=5)
    texts = _slack_texts(delivery)
    titles = sorted(t.splitlines()[0] for t in texts)
    assert titles == sorted(
        [
            ":rotating_light: OpenAICostSpendSpike: alpha_chat",
            ":rotating_light: OpenAICostSpendLimitForecast: beta_search",
            ":rotating_light: OpenAICostSpendLimitNear: beta_search",
            ":rotating_light: OpenAICostSpendAlertThresholdCrossed: organization",
            # gamma's limit (0.01) is not enforced: it is gamma's monthly budget.
            ":rotating_light: OpenAICostMonthlyForecastOverBudget: gamma_eval_test",
        ]
    ), texts
    (limit,) = [t for t in texts if "SpendLimitForecast" in t.splitlines()[0]]
    assert f"*Hard limit at OpenAI:* {limit_cents / 100:.2f} usd" in limit, limit
    reached = time.strftime("%Y-%m-%d", time.gmtime(today))
    assert f"*Limit reached on (UTC):* {reached}" in limit, limit
    (crossed,) = [t for t in texts if "ThresholdCrossed" in t.splitlines()[0]]
    assert f"*OpenAI spend alert:* {alert_cents / 100:.2f} usd" in crossed, crossed
    firing = _firing(delivery)
    assert ("OpenAICostMonthlyForecastOverBudget", "beta_search") in firing
    assert not any(p == "gamma_eval_test" for a, p in firing if "Limit" in a)


def _demo_days(vm: VictoriaMetrics) -> dict[str, dict[int, float]]:
    """Return the demo's pushed spend per project and UTC day, checking its labels."""
    totals: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    series = vm.export("openai_daily_cost")
    assert series
    for one in series:
        # The rules keep demo="true" series apart and alert on them only with the
        # demo switch (deploy/vmalert/openai-cost-demo.yml) loaded.
        assert one.metric["demo"] == "true", one.metric
        assert one.metric["job"] == "openai-cost-pusher", one.metric
        for ts, value in zip(one.timestamps, one.values, strict=True):
            totals[one.metric["project"]][ts // 1000] += value
    return {project: dict(days) for project, days in totals.items()}


@dataclass(frozen=True)
class _Scope:
    """The organization (project None) or a project, with its spend per UTC day."""

    project: str | None
    days: Mapping[int, float]

    def month_to_date(self, today: int) -> float:
        """Return the spend of `today`'s UTC month up to `today`."""
        month = time.gmtime(today).tm_mon
        return sum(
            v
            for d, v in self.days.items()
            if d <= today and time.gmtime(d).tm_mon == month
        )

    def forecasts(self, today: int) -> tuple[float, float]:
        """Return the month-end forecasts of the budget alert (7-day average) and of
        the hard-limit alert (7-day median, a missing day as zero after a cost in
        the 8 days before it)."""
        at = datetime.fromtimestamp(today, UTC)
        left = calendar.monthrange(at.year, at.month)[1] - at.day
        week = range(today - 7 * DAY, today, DAY)
        average = sum(self.days.get(d, 0.0) for d in week) / 7
        points = [
            self.days.get(d, 0.0)
            for d in week
            if d in self.days or any(d - 8 * DAY < k <= d for k in self.days)
        ]
        mtd = self.month_to_date(today)
        median = mtd + statistics.median(points) * left if points else mtd
        return mtd + average * left, median


def _limit_alerts(
    vm: VictoriaMetrics, days: Mapping[str, Mapping[int, float]], today: int
) -> tuple[set[tuple[str, str | None]], list[str]]:
    """Return what the demo's hard limits, spend alerts and monthly budgets make
    fire, as (alertname, project), and the Slack titles that follow (one per spend
    alert threshold; a budget alert inhibited by the limit forecast of its scope)."""
    org_days: dict[int, float] = defaultdict(float)
    for project_days in days.values():
        for day, value in project_days.items():
            org_days[day] += value
    org = _Scope(None, org_days)

    def scope_of(metric: Mapping[str, str]) -> _Scope:
        if metric["scope"] == "organization":
            return org
        return _Scope(metric["project"], days.get(metric["project"], {}))

    firing: set[tuple[str, str | None]] = set()
    titles: list[str] = []
    budgets: dict[str | None, float] = {None: MONTHLY_BUDGET}
    for series in vm.export("openai_spend_limit"):
        scope, limit = scope_of(series.metric), series.values[-1]
        budgets[scope.project] = limit
        if series.metric["enforcement"] != "enforcing":
            continue
        if scope.month_to_date(today) >= NEAR_RATIO * limit:
            firing.add(("OpenAICostSpendLimitNear", scope.project))
        if scope.forecasts(today)[1] >= limit:
            firing.add(("OpenAICostSpendLimitForecast", scope.project))
    for series in vm.export("openai_spend_alert_threshold"):
        scope = scope_of(series.metric)
        if scope.month_to_date(today) >= series.values[-1]:
            firing.add(("OpenAICostSpendAlertThresholdCrossed", scope.project))
            titles.append(
                ":rotating_light: OpenAICostSpendAlertThresholdCrossed: "
                + (scope.project or "organization")
            )
    for project, budget in budgets.items():
        scope = org if project is None else _Scope(project, days.get(project, {}))
        if scope.month_to_date(today) and scope.forecasts(today)[0] > budget:
            firing.add(("OpenAICostMonthlyForecastOverBudget", project))
    for alert, project in sorted(firing, key=str):
        if alert == "OpenAICostSpendAlertThresholdCrossed":
            continue
        if alert == "OpenAICostMonthlyForecastOverBudget":
            if ("OpenAICostSpendLimitForecast", project) in firing:
                continue  # inhibited in Alertmanager
            titles.append(
                f":rotating_light: {alert}" + (f": {project}" if project else "")
            )
            continue
        titles.append(f":rotating_light: {alert}: {project or 'organization'}")
    return firing, titles


@pytest.mark.vm
@pytest.mark.slow
def test_demo_spike_reaches_slack_for_customer_chat_only(
    tmp_path: Path, started: list[Stoppable]
) -> None:
    """With the demo switch loaded, `--demo --once` makes customer_chat's spike reach
    Slack and no other project's, plus its daily-budget alert exactly when today's
    spend (five usual days, 50 % to 100 % of it arrived by the hour) is over 100, and
    the alerts of the demo's hard limits, spend alerts and monthly budgets exactly as
    the day of the month makes them hold (computed here from what it pushed)."""
    days: dict[str, dict[int, float]] = {}
    limit_alerts: list[tuple[set[tuple[str, str | None]], list[str]]] = []

    def run_demo(vm: VictoriaMetrics) -> None:
        _run_pusher(vm, ["--demo", "--push-url", vm.push_url], tmp_path)
        days.update(_demo_days(vm))
        today = int(time.time()) // DAY * DAY
        limit_alerts.append(_limit_alerts(vm, days, today))

    def messages() -> int:
        # The spike and the daily budget come first; the limit alerts follow.
        today = int(time.time()) // DAY * DAY
        over = sum(d.get(today, 0.0) > DAILY_BUDGET for d in days.values())
        return 1 + over + len(limit_alerts[0][1])

    delivery = deliver_to_slack(
        tmp_path,
        started,
        seed=run_demo,
        rule_files=(RULES, OVERRIDES, DEMO_SWITCH),
        expect=messages,
    )
    today = int(time.time()) // DAY * DAY
    spend = {p: d.get(today, 0.0) for p, d in days.items()}
    chat = days["customer_chat"]
    chat_ratio = spend["customer_chat"] / _median_before(chat, today)
    why = f"customer_chat: today {spend['customer_chat']:.2f}, ratio {chat_ratio:.2f}"
    expected: set[tuple[str, str | None]] = {("OpenAICostSpendSpike", "customer_chat")}
    over_budget = {p for p, s in spend.items() if s > DAILY_BUDGET}
    expected |= {("OpenAICostDailyBudgetExceeded", p) for p in over_budget}
    # The demo's hard limits and spend alerts, by the day of the month.
    ((limited, limit_titles),) = limit_alerts
    assert _firing(delivery) == expected | limited, why
    assert all(a["labels"].get("demo") == "true" for a in delivery.firing)
    texts = _slack_texts(delivery)
    titles = sorted(t.splitlines()[0] for t in texts)
    want = [f":rotating_light: {a}: {p}" for a, p in expected] + limit_titles
    assert titles == sorted(want), texts
    spike = next(t for t in texts if "OpenAICostSpendSpike" in t.splitlines()[0])
    assert f"*Spend today (UTC):* {spend['customer_chat']:.2f} usd" in spike, spike
    assert delivery.first_after < FIRST_MESSAGE_WITHIN, delivery.first_after


@pytest.mark.vm
@pytest.mark.slow
def test_demo_without_the_switch_fires_nothing(
    tmp_path: Path, started: list[Stoppable]
) -> None:
    """Under the shipped rules alone the same demo pages nobody: no Slack message and
    no alert of a project, in the time the switched-on demo takes to reach Slack (the
    only alert is the real pusher's absence, pending for its 10-minute grace)."""
    pushed: list[VictoriaMetrics] = []

    def run_demo(vm: VictoriaMetrics) -> None:
        _run_pusher(vm, ["--demo", "--push-url", vm.push_url], tmp_path)
        pushed.append(vm)

    delivery = deliver_to_slack(
        tmp_path, started, seed=run_demo, wait=FIRST_MESSAGE_WITHIN
    )
    assert delivery.payloads == [], _slack_texts(delivery)
    assert delivery.firing == []
    vmalert = next(s for s in started if isinstance(s, VmAlert))
    held = {(a["name"], a["state"]) for a in vmalert.alerts()}
    assert held <= {("OpenAICostPusherStale", "pending")}, held
    # The rules did evaluate the demo: its spend is recorded, apart from real spend.
    (vm,) = pushed
    recorded = vm.query(
        'openai_cost:project_spend_today:sum{project="customer_chat",demo="true"}'
    )
    assert recorded, "the demo's spend was not recorded"
