"""Seeded cost histories for the alerting and dashboard tests, and their exposition.

This module owns test data only: daily cost lines shaped like the metric contract
(docs/design.md, "Costs": one sample per project, line item and UTC day, stamped at the
day's 00:00 UTC), the pusher's self-monitoring series ("Self-monitoring"), and the
Prometheus text that carries them to VictoriaMetrics with explicit millisecond
timestamps. It starts no server: the tests and `scripts/backtest-alerts.py` push it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import requests

DAY_MS = 86_400_000
PUSH_EVERY = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class CostLine:
    """One day's cost of one line item of one project (openai_daily_cost)."""

    project_id: str
    project: str
    line_item: str
    day: date
    value: float
    currency: str = "usd"


@dataclass(frozen=True, slots=True)
class Outage:
    """A stretch of time in which the pusher is down (dead) or failing (running)."""

    start: datetime
    end: datetime
    dead: bool


def day_start_ms(day: date) -> int:
    """Return the epoch milliseconds of `day` at 00:00 UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def _escape(value: str) -> str:
    """Escape a label value for the Prometheus text format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, labels: dict[str, str], value: float, ts_ms: int) -> str:
    """Render one sample line with sorted labels and an explicit timestamp."""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}} {value!r} {ts_ms}"


def render_costs(lines: Iterable[CostLine], *, job: str = "openai-cost-pusher") -> str:
    """Render cost lines as openai_daily_cost samples stamped at each day's 00:00."""
    out = []
    for line in lines:
        labels = {
            "job": job,
            "project_id": line.project_id,
            "project": line.project,
            "line_item": line.line_item,
            "currency": line.currency,
        }
        out.append(
            _line("openai_daily_cost", labels, line.value, day_start_ms(line.day))
        )
    return "\n".join(out) + "\n"


def render_cost_today(
    lines: Iterable[CostLine], at: datetime, *, job: str = "openai-cost-pusher"
) -> str:
    """Render openai_cost_today (per project, stamped at `at`) for `at`'s UTC day."""
    totals: dict[tuple[str, str, str], list[float]] = {}
    for line in lines:
        if line.day == at.date():
            key = (line.project_id, line.project, line.currency)
            totals.setdefault(key, []).append(line.value)
    out = []
    ts_ms = int(at.timestamp()) * 1000
    for (project_id, project, currency), values in sorted(totals.items()):
        labels = {
            "job": job,
            "project_id": project_id,
            "project": project,
            "currency": currency,
        }
        out.append(_line("openai_cost_today", labels, math.fsum(values), ts_ms))
    return "\n".join(out) + "\n"


def render_self_monitoring(
    start: datetime,
    end: datetime,
    outages: Sequence[Outage] = (),
    *,
    job: str = "openai-cost-pusher",
) -> str:
    """Render the pusher's self-monitoring every 15 minutes from `start` to `end`.

    In a dead outage nothing is pushed; in a failing one the samples keep coming but
    the last-success timestamp stays put and the failure counter grows.
    """
    out = []
    last_success = start
    success = failure = 0
    at = start
    while at <= end:
        outage = next((o for o in outages if o.start <= at < o.end), None)
        if outage is None:
            last_success = at
            success += 1
        elif not outage.dead:
            failure += 1
        if outage is None or not outage.dead:
            ts_ms = int(at.timestamp()) * 1000
            out.append(
                _line(
                    "openai_cost_pusher_last_success_timestamp_seconds",
                    {"job": job, "dataset": "costs"},
                    float(int(last_success.timestamp())),
                    ts_ms,
                )
            )
            for result, count in (("success", success), ("failure", failure)):
                out.append(
                    _line(
                        "openai_cost_pusher_cycles_total",
                        {"job": job, "result": result},
                        float(count),
                        ts_ms,
                    )
                )
        at += PUSH_EVERY
    return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """A hard monthly limit (openai_spend_limit) or, with `alert_id`, one of OpenAI's
    spend alerts (openai_spend_alert_threshold), in currency units. An empty
    `project_id` is the organization's."""

    project_id: str
    project: str
    amount: float
    enforcement: str = "enforcing"
    alert_id: str = ""
    currency: str = "usd"


def render_spend_limits(
    limits: Iterable[SpendLimit],
    start: datetime,
    end: datetime,
    *,
    every: timedelta = timedelta(hours=1),
    job: str = "openai-cost-pusher",
) -> str:
    """Render limits and spend alerts as the pusher pushes them: every `every` from
    `start` to `end`, stamped at push time."""
    out = []
    for limit in limits:
        labels = {
            "job": job,
            "scope": "project" if limit.project_id else "organization",
            "project_id": limit.project_id,
            "project": limit.project,
            "currency": limit.currency,
        }
        if limit.alert_id:
            name = "openai_spend_alert_threshold"
            labels["alert_id"] = limit.alert_id
        else:
            name = "openai_spend_limit"
            labels["enforcement"] = limit.enforcement
        at = start
        while at <= end:
            out.append(_line(name, labels, limit.amount, int(at.timestamp()) * 1000))
            at += every
    return "\n".join(out) + "\n"


def push_text(push_url: str, text: str) -> None:
    """POST Prometheus text to a VictoriaMetrics import endpoint."""
    resp = requests.post(push_url, data=text.encode(), timeout=30)
    resp.raise_for_status()


def days_ending(last_day: date, count: int) -> list[date]:
    """Return the `count` UTC days that end with `last_day`, oldest first."""
    return [last_day - timedelta(days=count - 1 - i) for i in range(count)]


def _flat(
    project: str, values: Sequence[float | None], last_day: date, item: str = "gpt-4o"
) -> list[CostLine]:
    """Return one line item per day for `values` (None = no sample that day)."""
    days = days_ending(last_day, len(values))
    return [
        CostLine(f"proj_{project}", project, item, day, value)
        for day, value in zip(days, values, strict=True)
        if value is not None
    ]


def demo_organization(last_day: date, *, spike: bool = True) -> list[CostLine]:
    """Return a demo-like 30-day organization: five projects, line items, weekly rhythm.

    chat_prod spends about 56 a weekday and 24 a weekend day over two line items and,
    with `spike`, three times its usual on the last day; the others are steady, small,
    weekly-batch or unattributed.
    """
    rng = random.Random(20250331)
    lines: list[CostLine] = []
    for day in days_ending(last_day, 30):
        weekend = day.weekday() >= 5
        noise = 1 + rng.uniform(-0.1, 0.1)
        chat_in = (15.0 if weekend else 35.0) * noise
        chat_out = chat_in * 0.6
        if spike and day == last_day:
            chat_in, chat_out = chat_in * 3, chat_out * 3
        lines += [
            CostLine(
                "proj_chat",
                "chat_prod",
                "gpt-4o-2024-08-06, input",
                day,
                round(chat_in, 4),
            ),
            CostLine(
                "proj_chat",
                "chat_prod",
                "gpt-4o-2024-08-06, output",
                day,
                round(chat_out, 4),
            ),
            CostLine(
                "proj_search",
                "search_embeddings",
                "text-embedding-3-small",
                day,
                round(6.0 * (1 + rng.uniform(-0.1, 0.1)), 4),
            ),
            CostLine(
                "proj_eval",
                "assistant_test_eval",
                "file search tool calls",
                day,
                round(1.5 * (1 + rng.uniform(-0.2, 0.2)), 4),
            ),
            CostLine(
                "",
                "unattributed",
                "web search tool calls",
                day,
                round(0.4 * (1 + rng.uniform(-0.2, 0.2)), 4),
            ),
        ]
        if day.weekday() == 0:
            lines.append(
                CostLine(
                    "proj_batch", "batch_jobs", "gpt-4o-mini, batch input", day, 25.0
                )
            )
    return lines


def week_then_spike(last_day: date) -> list[CostLine]:
    """Return alpha: 10 a day for a week, 40 on the last day; beta: a steady 20."""
    return _flat("alpha", [10.0] * 7 + [40.0], last_day) + _flat(
        "beta", [20.0] * 8, last_day
    )


def _gradual_rise(last_day: date) -> list[CostLine]:
    """Return one project growing 8 % a day for 30 days (5 to about 46)."""
    return _flat("growing", [round(5 * 1.08**i, 4) for i in range(30)], last_day)


def tiny(last_day: date) -> list[CostLine]:
    """Return a project at 1 a day that spends 4 on the last day (below the floor)."""
    return _flat("tiny", [1.0] * 14 + [4.0], last_day)


def new_project(last_day: date) -> list[CostLine]:
    """Return a project with two days of history, then 60 on the last day."""
    return _flat("newbie", [10.0, 10.0, 60.0], last_day)


def _repeated_spikes(last_day: date) -> list[CostLine]:
    """Return 20 a day with a 95 spike, then a 45 spike three days later.

    The median of the 7 days before the second spike is still 20 (ratio 2.25); the
    mean would be 30.7 (ratio 1.47) and would hide it.
    """
    values = [20.0] * 30
    values[-9] = 95.0
    values[-6] = 45.0
    return _flat("spiky", values, last_day)


def _weekly_rhythm(last_day: date) -> list[CostLine]:
    """Return 30 a weekday and 6 a weekend day: Mondays must not look like spikes."""
    return [
        CostLine(
            "proj_office",
            "office_hours",
            "gpt-4o",
            day,
            6.0 if day.weekday() >= 5 else 30.0,
        )
        for day in days_ending(last_day, 30)
    ]


def _over_monthly_budget(last_day: date) -> list[CostLine]:
    """Return two projects at 75 a day each: 150 x 31 days is over the 3000 budget."""
    return _flat("web", [75.0] * 30, last_day) + _flat("api", [75.0] * 30, last_day)


def _pusher_trouble(last_day: date) -> list[CostLine]:
    """Return a steady project; the scenario's self-monitoring has the outages."""
    return _flat("steady", [20.0] * 30, last_day)


def _capped(last_day: date) -> list[CostLine]:
    """Return 20 a day to Mar 15 (a pace of 600 for the month), then 28 a day (1.4x:
    no spike) until 650 is spent on Mar 29, then nothing: the project's enforcing
    hard limit of 650 stops it."""
    values: list[float | None] = []
    spent = 0.0
    for day in days_ending(last_day, 30):
        rate = 20.0 if day.day <= 15 else 28.0
        value = min(rate, 650.0 - spent) if day.month == last_day.month else rate
        if day.month == last_day.month:
            spent += value
        values.append(value if value > 0 else None)
    return _flat("capped", values, last_day)


def _capped_limits(_last_day: date) -> list[SpendLimit]:
    """Return capped's enforcing hard limit of 650."""
    return [SpendLimit("proj_capped", "capped", 650.0)]


def _roomy(last_day: date) -> list[CostLine]:
    """Return a steady 20 a day (620 in March)."""
    return _flat("roomy", [20.0] * 30, last_day)


def _roomy_limits(_last_day: date) -> list[SpendLimit]:
    """Return roomy's enforcing hard limit of 1000, which it never reaches."""
    return [SpendLimit("proj_roomy", "roomy", 1000.0)]


def _uncapped(last_day: date) -> list[CostLine]:
    """Return the capped project's month without the cap: 28 a day to the end."""
    values = [20.0 if d.day <= 15 else 28.0 for d in days_ending(last_day, 30)]
    return _flat("uncapped", values, last_day)


def _uncapped_limits(_last_day: date) -> list[SpendLimit]:
    """Return a hard limit of 650 that OpenAI does not enforce."""
    return [SpendLimit("proj_uncapped", "uncapped", 650.0, enforcement="inactive")]


def _alerted(last_day: date) -> list[CostLine]:
    """Return a steady 20 a day from Mar 2: 300 so far on Mar 16."""
    return _flat("alerted", [20.0] * 30, last_day)


def _alerted_limits(_last_day: date) -> list[SpendLimit]:
    """Return the project's spend alert at OpenAI at 300, crossed on Mar 16."""
    return [SpendLimit("proj_alerted", "alerted", 300.0, alert_id="spend_alert_300")]


@dataclass(frozen=True)
class Scenario:
    """A named history for the back-test, with the pusher outages it includes and
    the hard limits and spend alerts set at OpenAI."""

    name: str
    costs: Callable[[date], list[CostLine]]
    outages: Callable[[date], list[Outage]] = lambda _day: []
    limits: Callable[[date], list[SpendLimit]] = lambda _day: []


def _outages(last_day: date) -> list[Outage]:
    """Return a dead pusher for 8 hours and, later, a failing one for 2 hours."""
    dead_day = last_day - timedelta(days=20)
    fail_day = last_day - timedelta(days=10)

    def at(day: date, hour: int) -> datetime:
        return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)

    return [
        Outage(at(dead_day, 6), at(dead_day, 14), dead=True),
        Outage(at(fail_day, 8), at(fail_day, 10), dead=False),
    ]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("demo organization, spike on the last day", demo_organization),
    Scenario("normal week, then a spike", week_then_spike),
    Scenario("gradual rise (+8 %/day)", _gradual_rise),
    Scenario("tiny project, 4x but below the floor", tiny),
    Scenario("new project, two days of history", new_project),
    Scenario("two spikes three days apart", _repeated_spikes),
    Scenario("weekday/weekend rhythm", _weekly_rhythm),
    Scenario("pace over the monthly budget", _over_monthly_budget),
    Scenario("pusher dead 8h, later failing 2h", _pusher_trouble, _outages),
    Scenario(
        "pace to an enforcing hard limit (reached Mar 29)",
        _capped,
        limits=_capped_limits,
    ),
    Scenario("a hard limit it does not reach", _roomy, limits=_roomy_limits),
    Scenario("a hard limit not enforced", _uncapped, limits=_uncapped_limits),
    Scenario("an OpenAI spend alert crossed once", _alerted, limits=_alerted_limits),
)
