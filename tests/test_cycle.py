"""End-to-end cycles: the fake Admin API over HTTP, a real VictoriaMetrics, read back.

These tests hold the product's promise: the daily numbers in VictoriaMetrics equal the
API's, day by day and project by project, through revisions, outages, restarts, rate
limits and pagination.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from openai_cost_pusher import app, metrics
from openai_cost_pusher.push import VmClient
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI, Fault
from tests.orgs import (
    DAY,
    EXPECTED_LABEL,
    assert_equal_costs,
    dead_url,
    fake_costs,
    make_pusher,
    seed_odd_org,
    vm_costs,
)
from tests.vm import VictoriaMetrics


def _today(clock: Clock) -> int:
    return int(clock.now) // DAY * DAY


def _window(clock: Clock, days: int) -> tuple[int, int]:
    """Return a backfill of `days` complete days plus today."""
    today = _today(clock)
    return today - days * DAY, today + DAY


def _one_sample_per_day(vm: VictoriaMetrics, clock: Clock, days: int) -> None:
    """Assert count_over_time over each day's window is 1 for every series."""
    start, end = _window(clock, days)
    for day in range(start, end, DAY):
        rows = vm.query("count_over_time(openai_daily_cost[1d])", at=day + DAY - 1)
        assert rows, f"no samples for day {day}"
        assert {row["value"][1] for row in rows} == {"1"}, (day, rows[:3])


def test_backfill_lands_every_daily_cost_exactly(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """The first cycle backfills 30 complete days and today, every value exact."""
    seed_odd_org(fake, _today(clock))
    pusher = make_pusher(fake, vm.push_url, clock)
    report = pusher.run_cycle()
    assert report.ok, report.error
    assert_equal_costs(fake_costs(fake, *_window(clock, 30)), vm_costs(vm))
    _one_sample_per_day(vm, clock, 30)
    labels = {
        s.metric.get("project_id", ""): s.metric["project"]
        for s in vm.export('{__name__="openai_daily_cost"}')
    }
    assert labels == EXPECTED_LABEL
    # several pages and queries were needed, each page repeating its query
    assert len(fake.requests_to("/organization/costs")) > 3


def test_revisions_replace_values_and_steady_state_pushes_only_live_series(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Upward revisions land; an unchanged cycle pushes only the live series."""
    today = _today(clock)
    seed_odd_org(fake, today)
    pusher = make_pusher(fake, vm.push_url, clock)
    assert pusher.run_cycle().ok
    for (day, pid, item, currency), value in fake.costs().items():
        if day >= today - DAY and pid == "proj_intl":
            fake.set_cost(day, pid, item, value * 1.5 + 0.123456789, currency)
    clock.now += 900
    revised = pusher.run_cycle()
    assert revised.ok
    assert_equal_costs(fake_costs(fake, *_window(clock, 30)), vm_costs(vm))
    _one_sample_per_day(vm, clock, 30)

    clock.now += 900
    steady = pusher.run_cycle()
    live = vm.query("count(last_over_time(openai_cost_today[10m]))", at=clock.now)
    assert steady.ok
    assert steady.samples == int(live[0]["value"][1])
    assert steady.samples < 0.01 * (revised.samples + 10 * 30 * 7)


def test_downward_revision_is_reported_and_counted(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A value revised down is logged naming series and day, and counted."""
    today = _today(clock)
    fake.add_project("proj_x", "X")
    fake.set_cost(today - DAY, "proj_x", "gpt-4o, input", 10.0)
    fake.set_cost(today - DAY, "proj_x", "gpt-4o, output", 3.0)
    pusher = make_pusher(fake, vm.push_url, clock)
    assert pusher.run_cycle().ok
    fake.set_cost(today - DAY, "proj_x", "gpt-4o, input", 7.5)
    with caplog.at_level(logging.WARNING):
        assert pusher.run_cycle().ok
    warnings = [r for r in caplog.records if "revised downwards" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].__dict__["line_item"] == "gpt-4o, input"
    assert warnings[0].__dict__["pushed"] == 10.0
    assert warnings[0].__dict__["now"] == 7.5
    assert pusher.stats.downward_revisions == 1
    # VictoriaMetrics keeps the larger value: the documented limit
    stored = vm_costs(vm, labels=None)
    assert stored[("proj_x", "gpt-4o, input", "usd", (today - DAY) * 1000)] == 10.0
    # the next cycle does not report the same revision again
    caplog.clear()
    assert pusher.run_cycle().ok
    assert pusher.stats.downward_revisions == 1


def test_push_outage_heals_without_losing_a_day(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Days missed while VictoriaMetrics was down are pushed by the next good cycle."""
    start_day = _today(clock)
    seed_odd_org(fake, start_day + 5 * DAY)
    pusher = make_pusher(fake, vm.push_url, clock)
    assert pusher.run_cycle().ok
    good_sink = pusher.sink
    pusher_stop = threading.Event()
    pusher.sink = VmClient(
        make_session(),
        dead_url(),
        authorization=None,
        timeouts=Timeouts(1, 1),
        retrying=lambda: retry_policy(1, pusher_stop, sleep=lambda s: None),
        stop=pusher_stop,
    )
    for _ in range(5):  # five days of outage, longer than the 3-day lookback
        clock.advance_days(1)
        report = pusher.run_cycle()
        assert not report.ok
        assert "push to VictoriaMetrics" in (report.error or "")
    pusher.sink = good_sink
    clock.advance_days(0.25)
    healed = pusher.run_cycle()
    assert healed.ok
    # back to the first day that did not land: the first failed cycle's today (the
    # older days of its lookback had not changed, so nothing of them was lost)
    assert healed.window.days == 5
    assert_equal_costs(fake_costs(fake, *_window(clock, 30 + 5)), vm_costs(vm))
    assert pusher.stats.cycles == {"success": 2, "failure": 5}


def test_restart_after_outage_backfills_missed_days(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """A new pusher process after an outage backfills and changes no stored value."""
    seed_odd_org(fake, _today(clock) + 5 * DAY)
    first = make_pusher(fake, vm.push_url, clock)
    assert first.run_cycle().ok
    clock.advance_days(4)
    second = make_pusher(fake, vm.push_url, clock)  # a restart: fresh state
    assert second.run_cycle().ok
    assert_equal_costs(
        fake_costs(fake, _window(clock, 34)[0], _window(clock, 1)[1]), vm_costs(vm)
    )
    _one_sample_per_day(vm, clock, 30)


def test_failed_page_lands_only_the_days_before_it(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """When a later costs page keeps failing, the days of the pages before it land
    whole, each equal to the API's, and not one day of the failed page: a day lands
    once the answer has moved past it. Today's spend, pushed after the days, is
    not pushed at all."""
    seed_odd_org(fake, _today(clock))
    pusher = make_pusher(fake, vm.push_url, clock)
    fake.inject(Fault.slow(0), path_prefix="/v1/organization/costs", times=1)
    fake.inject(Fault.server_error(), path_prefix="/v1/organization/costs", times=20)
    report = pusher.run_cycle()
    assert not report.ok
    assert "HTTP 500" in (report.error or "")
    costs = report.get("costs")
    start, _ = _window(clock, 30)
    assert 0 < costs.landed_days < 30
    expected = fake_costs(fake, start, start + costs.landed_days * DAY)
    assert expected  # the first page's days held costs
    assert_equal_costs(expected, vm_costs(vm))
    assert vm.export('{__name__="openai_cost_today"}') == []
    # the next cycle fetches the whole window again: the failed one's could have
    # been out of order before it failed
    assert pusher.costs.unpushed_from == start
    failures = vm.query(
        'last_over_time(openai_cost_pusher_cycles_total{result="failure"}[1d])',
        at=clock.now,
    )
    assert failures[0]["value"][1] == "1"
    # the next cycle, with the API healthy again, backfills everything
    fake.clear_faults()
    assert pusher.run_cycle().ok
    assert_equal_costs(fake_costs(fake, *_window(clock, 30)), vm_costs(vm))


def test_rate_limits_and_server_errors_still_land_exactly(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """429 (honouring Retry-After) and 5xx are retried and the data is exact."""
    seed_odd_org(fake, _today(clock))
    fake.amount_as_string = True
    sleeps: list[float] = []
    pusher = make_pusher(fake, vm.push_url, clock, sleeps=sleeps)
    fake.inject(Fault.rate_limited(retry_after=7), path_prefix="/v1/organization/costs")
    fake.inject(Fault.server_error(502), path_prefix="/v1/organization/projects")
    fake.inject(Fault.server_error(503), path_prefix="/v1/organization/costs")
    assert pusher.run_cycle().ok
    assert max(sleeps) >= 7
    assert_equal_costs(fake_costs(fake, *_window(clock, 30)), vm_costs(vm))
    codes = pusher.stats.api_requests
    assert codes[("costs", "429")] == 1
    assert codes[("projects", "502")] == 1


def test_vanished_project_keeps_its_name(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """A project that leaves the list keeps its label; a never-listed one is unknown."""
    today = _today(clock)
    fake.add_project("proj_gone", "Gone Soon")
    fake.set_cost(today, "proj_gone", "x", 1.0)
    pusher = make_pusher(fake, vm.push_url, clock)
    assert pusher.run_cycle().ok
    fake.remove_project("proj_gone")
    fake.set_cost(today, "proj_gone", "x", 2.0)
    fake.set_cost(today, "proj_never", "x", 4.0)
    clock.now += 60
    assert pusher.run_cycle().ok
    labels = {
        s.metric.get("project_id", ""): s.metric["project"]
        for s in vm.export('{__name__="openai_daily_cost"}')
    }
    assert labels == {"proj_gone": "gone_soon", "proj_never": "unknown"}


def test_a_project_renamed_between_cycles_lands_under_its_new_name(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Series labels are kept from cycle to cycle only while the names stay: after a
    rename, the next cycle pushes the lookback's days under the new name, and a
    steady cycle after it pushes nothing more."""
    today = _today(clock)
    fake.add_project("proj_r", "Old Name")
    for day in range(today - 3 * DAY, today + DAY, DAY):
        fake.set_cost(day, "proj_r", "gpt-4o, input", 1.25)
    pusher = make_pusher(fake, vm.push_url, clock)
    assert pusher.run_cycle().ok
    fake.add_project("proj_r", "New Name")
    clock.now += 900
    renamed = pusher.run_cycle()
    assert renamed.ok, renamed.error
    held = {
        (s.metric["project"], ts)
        for s in vm.export('{__name__="openai_daily_cost"}')
        for ts in s.timestamps
    }
    lookback = range(today - 2 * DAY, today + DAY, DAY)
    assert {(p, ts) for p, ts in held if p == "new_name"} == {
        ("new_name", d * 1000) for d in lookback
    }
    clock.now += 900
    steady = pusher.run_cycle()
    assert steady.ok
    assert steady.get("costs").samples == 1  # openai_cost_today alone


def test_a_day_that_landed_unchanged_is_not_built_again(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A day whose answer equals that of its last landing builds no samples (the
    ledger holds them); a changed day, a day the store lost and a renamed project's
    days are built and pushed again, and the store ends equal to the API."""
    today = _today(clock)
    seed_odd_org(fake, today)
    fake.add_project("proj_x", "X")
    fake.set_cost(today - DAY, "proj_x", "gpt-4o, input", 10.0)
    pusher = make_pusher(fake, vm.push_url, clock, costs_by_api_key=True)
    assert pusher.run_cycle().ok
    built: list[int] = []
    for name in ("cost_samples", "quantity_samples", "key_cost_samples"):
        real = getattr(app, name)

        def spy(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            # (..., start, end, labels_cache, keys)
            built.append(args[-4] if len(args) > 6 else kwargs.get("start", -1))
            return _real(*args, **kwargs)

        monkeypatch.setattr(app, name, spy)

    clock.now += 900
    assert pusher.run_cycle().ok
    assert built == []  # nothing changed: no day of either data set was built

    fake.set_cost(today - DAY, "proj_x", "gpt-4o, input", 12.5)
    clock.now += 900
    assert pusher.run_cycle().ok
    assert set(built) == {today - DAY}  # costs and quantities of that day only
    stored = vm_costs(vm, labels=None)
    assert_equal_costs(fake_costs(fake, *_window(clock, 30)), stored)

    built.clear()
    fake.add_project("proj_x", "X renamed")
    clock.now += 900
    assert pusher.run_cycle().ok
    assert set(built) == {today - 2 * DAY, today - DAY, today}  # the lookback
    names = {
        s.metric["project"]
        for s in vm.export('{__name__="openai_daily_cost",project_id="proj_x"}')
    }
    assert "x_renamed" in names


def test_the_costs_labels_live_one_cycle_and_a_steady_cycle_builds_none(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cycle builds each costs series' labels once for all the days it builds,
    and keeps none for the next (the ledgers find the series by their keys): a
    steady cycle builds none, and a later cycle that builds a changed day builds
    the labels of that day's series again, once each."""
    today = _today(clock)
    for project in ("proj_a", "proj_b"):
        fake.add_project(project, project.upper())
        for day in range(today - 3 * DAY, today + DAY, DAY):
            fake.set_cost(day, project, "gpt-4o, input", 1.0)
    fake.set_cost(today - DAY, "proj_a", "web search", 2.0, quantity=3.0)
    built: list[tuple[str, tuple[str, str, str]]] = []
    real = metrics.daily_labels

    def spy(name: str, key: tuple[str, str, str], *args: Any) -> Any:
        built.append((name, key))
        return real(name, key, *args)

    monkeypatch.setattr(metrics, "daily_labels", spy)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=3)
    assert pusher.run_cycle().ok
    # three series (two costs, one quantity), each built once for all its days
    assert sorted(built) == sorted(
        [
            ("openai_daily_cost", ("proj_a", "gpt-4o, input", "usd")),
            ("openai_daily_cost", ("proj_b", "gpt-4o, input", "usd")),
            ("openai_daily_cost", ("proj_a", "web search", "usd")),
            ("openai_daily_cost_quantity", ("proj_a", "web search", "")),
        ]
    )
    built.clear()
    clock.now += 900
    assert pusher.run_cycle().ok
    assert built == []  # nothing changed: no day built, no labels built
    fake.set_cost(today - DAY, "proj_b", "gpt-4o, input", 1.5)
    clock.now += 900
    assert pusher.run_cycle().ok
    assert sorted(built) == sorted(  # that day's series, once each
        [
            ("openai_daily_cost", ("proj_a", "gpt-4o, input", "usd")),
            ("openai_daily_cost", ("proj_b", "gpt-4o, input", "usd")),
            ("openai_daily_cost", ("proj_a", "web search", "usd")),
            ("openai_daily_cost_quantity", ("proj_a", "web search", "")),
        ]
    )
    assert_equal_costs(fake_costs(fake, *_window(clock, 3)), vm_costs(vm, labels=None))
