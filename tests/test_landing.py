"""Landing is confirmed by the store, bad data is isolated to its day, pushes that fail
part-way leave whole days, and one retry budget serves a whole cycle.

The pure parts (`landing.Pending`, `held_by`, `read_ranges`, `Ledger.reconcile`) are
tested on values; the rest against a real VictoriaMetrics that is killed with SIGKILL
right after it acknowledged a push and restarted on the same data folder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from openai_cost_pusher.app import Pusher
from openai_cost_pusher.errors import PushRejected, PushUnavailable
from openai_cost_pusher.landing import (
    BLIND_CONFIRM_S,
    MAX_READ_DAYS,
    Pending,
    held_by,
    read_ranges,
)
from openai_cost_pusher.ledger import Ledger
from openai_cost_pusher.model import Sample
from openai_cost_pusher.push import UNANSWERED, PushStats, VmClient
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.vmread import Series, VmReader, query_root
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI
from tests.orgs import (
    DAY,
    ODD_PROJECTS,
    assert_equal_costs,
    dead_url,
    fake_costs,
    make_pusher,
    seed_odd_org,
    vm_costs,
)
from tests.test_cli import run_cli
from tests.vm import VictoriaMetrics, VmAgent

D0 = 1_730_419_200


# ---------------------------------------------------------------- pure parts


def test_pending_days_come_due_after_their_last_push() -> None:
    """A day is due for reading back only `after_s` after its last push."""
    pending = Pending()
    pending.pushed(D0, at=100.0, samples=5)
    pending.pushed(D0 + DAY, at=110.0, samples=3)
    pending.pushed(D0 + 2 * DAY, at=110.0, samples=0)  # nothing pushed: nothing due
    assert pending.samples == 8
    assert pending.due(at=125.0, after_s=20.0) == [D0]
    pending.pushed(D0, at=126.0, samples=1)  # pushed again: waits again
    assert pending.due(at=140.0, after_s=20.0) == [D0 + DAY]
    assert pending.first_push(D0) == 100.0
    assert pending.oldest_age(150.0) == 50.0
    pending.confirmed(D0)
    pending.forget_before(D0 + 2 * DAY)
    assert len(pending) == 0
    assert pending.oldest_age(150.0) == 0.0


def test_read_ranges_cover_each_day_once_within_the_size_bound() -> None:
    """Every due day is read exactly once, in ranges of at most MAX_READ_DAYS."""
    days = [D0 + k * DAY for k in (0, 1, 2, 5, *range(10, 19))]
    ranges = read_ranges(days)
    covered = [d for start, end in ranges for d in range(start, end, DAY)]
    assert covered == sorted(days)
    assert all(end - start <= MAX_READ_DAYS * DAY for start, end in ranges)


def _sample(project_id: str, value: float, day: int = D0) -> Sample:
    labels = (("currency", "usd"), ("job", "x"), ("project_id", project_id))
    return Sample("openai_daily_cost", labels, value, day * 1000)


def test_reconcile_forgets_what_the_store_lacks() -> None:
    """Values the store lacks, or holds lower, are forgotten and so pushed again;
    a higher stored value (a downward revision) is not pushed forever."""
    ledger = Ledger()
    pushed = [_sample("a", 1.0), _sample("b", 2.0), _sample("c", 3.0), _sample("", 4.0)]
    assert ledger.diff(pushed, [])[0] == pushed
    ledger.commit(pushed, D0 * 1000, (D0 + DAY) * 1000)
    exported: list[Series] = [
        # the store leaves out empty labels: project_id="" is no label
        (
            (("__name__", "openai_daily_cost"), ("currency", "usd"), ("job", "x")),
            {D0 * 1000: 4.0},
        ),
        (
            (
                ("__name__", "openai_daily_cost"),
                ("currency", "usd"),
                ("job", "x"),
                ("project_id", "a"),
            ),
            {D0 * 1000: 1.0},
        ),
        (
            (
                ("__name__", "openai_daily_cost"),
                ("currency", "usd"),
                ("job", "x"),
                ("project_id", "b"),
            ),
            {D0 * 1000: 2.5},  # higher: a downward revision, kept
        ),
    ]
    lost = ledger.reconcile(held_by(exported), D0 * 1000, (D0 + DAY) * 1000)
    assert lost == [D0 * 1000]
    assert [s.labels[-1][1] for s in ledger.diff(pushed, [])[0]] == ["c"]


# ---------------------------------------------------------- against real servers


def _reader(vm: VictoriaMetrics) -> VmReader:
    stop = threading.Event()
    return VmReader(
        make_session(),
        query_root(vm.push_url),
        authorization=None,
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        retrying=lambda: retry_policy(5, stop),
    )


def _confirming(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock, after_s: float
) -> Pusher:
    pusher = make_pusher(fake, vm.push_url, clock)
    pusher.reader = _reader(vm)
    pusher.confirm_after_s = after_s
    return pusher


def test_acknowledged_data_lost_by_a_crash_is_pushed_again(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """VictoriaMetrics killed with SIGKILL a second after its 204 loses the backfill;
    restarted on the same data folder, the next cycles restore every value exactly,
    with no pusher restart, and nothing stays unconfirmed."""
    today = int(clock.now) // DAY * DAY
    seed_odd_org(fake, today)
    expected = fake_costs(fake, today - 30 * DAY, today + DAY)
    pusher = _confirming(fake, vm, clock, after_s=3.0)
    first = pusher.run_cycle()
    assert first.ok and first.get("costs").landed_days == 31
    assert pusher.stats.unconfirmed["costs"] == len(expected)
    time.sleep(1.0)
    vm.kill()
    vm.restart()
    assert len(vm_costs(vm)) < len(expected)  # the crash lost acknowledged data
    time.sleep(3.0)
    clock.now += 900
    healed = pusher.run_cycle()
    assert healed.ok
    assert healed.samples > len(expected) // 2  # pushed again, not only the live series
    # a restarted VictoriaMetrics makes new data searchable only after several
    # seconds; the default CONFIRM_AFTER_S (30 s) waits longer than that
    deadline = time.monotonic() + 60
    while len(vm_costs(vm)) < len(expected) and time.monotonic() < deadline:
        time.sleep(1.0)
    time.sleep(3.5)  # due for confirmation
    clock.now += 900
    settled = pusher.run_cycle()
    assert settled.ok
    assert pusher.stats.unconfirmed["costs"] == 0
    assert_equal_costs(expected, vm_costs(vm))


def test_without_a_read_back_each_pushed_day_is_pushed_again_for_a_while(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """When the read URL refuses (vmagent has no export), the pusher says so once and
    pushes every pushed day again each cycle until BLIND_CONFIRM_S has passed."""

    class Refusing:
        def export(self, match: str, start_ms: int, end_ms: int) -> list[Series]:
            raise PushRejected("read from VictoriaMetrics: HTTP 404")

        def series(
            self, match: str, start_ms: int, end_ms: int, *, limit: int = 1
        ) -> list[dict[str, str]]:
            raise PushRejected("series lookup in VictoriaMetrics: HTTP 404")

        def totals(self, match: str, start_ms: int, end_ms: int) -> tuple[int, float]:
            raise PushRejected("read totals from VictoriaMetrics: HTTP 404")

    mono = [1000.0]
    today = int(clock.now) // DAY * DAY
    seed_odd_org(fake, today, days_back=5)
    pusher = make_pusher(fake, vm.push_url, clock)
    pusher.reader = Refusing()
    pusher.monotonic = lambda: mono[0]
    first = pusher.run_cycle()
    daily = first.samples - len(vm.export('{__name__="openai_cost_today"}'))
    mono[0] += 900
    again = pusher.run_cycle()
    assert pusher.reader is None
    assert again.samples == first.samples  # everything pushed once more
    mono[0] += BLIND_CONFIRM_S
    done = pusher.run_cycle()
    assert done.samples < daily  # confirmed by time: only the live series now
    assert pusher.stats.unconfirmed["costs"] == 0


def test_a_poisoned_day_withholds_only_itself(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One malformed value on one day of thirty: the other days land exactly; the
    bad day is named in a WARNING, counted, fetched again each cycle, and lands once
    the API answers it well."""
    today = int(clock.now) // DAY * DAY
    seed_odd_org(fake, today)
    bad_day = today - 12 * DAY
    (key, _) = next((k, v) for k, v in fake.costs().items() if k[0] == bad_day)
    fake.poisoned[key] = "12,50"
    pusher = make_pusher(fake, vm.push_url, clock)
    with caplog.at_level(logging.WARNING):
        first = pusher.run_cycle()
    assert first.ok
    assert [day for day in {r.start for r in first.rejected}] == [bad_day]
    assert pusher.stats.rejected_buckets["costs"] == 1
    warning = next(r for r in caplog.records if "malformed result" in r.getMessage())
    assert warning.__dict__["endpoint"] == "/organization/costs"
    assert warning.__dict__["path"].endswith(".amount.value")
    expected = fake_costs(fake, today - 30 * DAY, today + DAY)
    stored = vm_costs(vm)
    assert {k[3] for k in stored} == {k[3] for k in expected} - {bad_day * 1000}
    assert_equal_costs(
        {k: v for k, v in expected.items() if k[3] != bad_day * 1000}, stored
    )
    clock.now += 900
    still = pusher.run_cycle()
    assert still.window.start == bad_day  # fetched again, though past the lookback
    del fake.poisoned[key]
    clock.now += 900
    healed = pusher.run_cycle()
    assert healed.ok and not healed.rejected
    assert pusher.stats.rejected_buckets["costs"] == 0
    assert_equal_costs(expected, vm_costs(vm))


class _FailingAfter:
    """A sink that passes `days` pushes with data to VictoriaMetrics, then fails."""

    def __init__(self, client: VmClient, days: int) -> None:
        self.client, self.days = client, days

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        pending = list(chunks)
        if pending and self.days <= 0:
            raise PushUnavailable("push to VictoriaMetrics: HTTP 503")
        if pending:
            self.days -= 1
        return self.client.push(pending)


def test_a_push_failing_part_way_leaves_whole_days_and_says_so(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Days go oldest first, each recorded when acknowledged: a failure on day 11
    leaves 10 whole days, the summary says so, and the next cycle reaches back to
    the first day that did not land."""
    today = int(clock.now) // DAY * DAY
    seed_odd_org(fake, today)
    pusher = make_pusher(fake, vm.push_url, clock)
    good = pusher.sink
    assert isinstance(good, VmClient)
    pusher.sink = _FailingAfter(good, days=10)
    with caplog.at_level(logging.INFO):
        failed = pusher.run_cycle()
    costs = failed.get("costs")
    assert not costs.ok and costs.landed_days == 10
    line = next(r for r in caplog.records if "cycle failed" in r.getMessage())
    assert line.__dict__["days_landed"] == 10 and line.__dict__["samples"] > 0
    stored_days = {k[3] for k in vm_costs(vm)}
    assert stored_days == {(today - k * DAY) * 1000 for k in range(21, 31)}
    pusher.sink = good
    clock.now += 900
    healed = pusher.run_cycle()
    assert healed.ok and healed.window.start == today - 20 * DAY
    assert_equal_costs(fake_costs(fake, today - 30 * DAY, today + DAY), vm_costs(vm))


class _Unanswered:
    """A sink to which nothing is answered (a demo whose store is down): every
    push goes nowhere, as `demo_guard.DemoSink` reports it."""

    def push(self, chunks: Iterable[bytes]) -> PushStats:
        for _ in chunks:  # rendered, then dropped
            pass
        return PushStats(where=UNANSWERED)


def test_a_backfill_that_went_nowhere_is_pushed_whole_next_cycle(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """A backfill's days are recorded as they render; where the push answers that
    nothing went anywhere, what was recorded is taken back, so the next cycle
    pushes every day again and the store equals the API."""
    today = int(clock.now) // DAY * DAY
    seed_odd_org(fake, today)
    pusher = make_pusher(fake, vm.push_url, clock)
    good = pusher.sink
    pusher.sink = _Unanswered()
    assert pusher.run_cycle().ok
    assert vm_costs(vm) == {}
    pusher.sink = good
    clock.now += 900
    assert pusher.run_cycle().ok
    assert_equal_costs(fake_costs(fake, today - 30 * DAY, today + DAY), vm_costs(vm))


def test_one_retry_budget_per_cycle_for_the_push_target(tmp_path: Path) -> None:
    """`--once` against a dead push URL gives up within the retry budget plus a few
    seconds, with one ERROR line naming the URL and the cause."""
    with FakeOpenAI() as fake:
        seed_odd_org(fake, int(time.time()) // DAY * DAY, days_back=3)
        url = dead_url()
        env = {
            "OPENAI_ADMIN_KEY": fake.admin_key,
            "OPENAI_BASE_URL": fake.base_url,
            "VM_PUSH_URL": url,
            "RETRY_BUDGET": "4s",
        }
        started = time.monotonic()
        result = run_cli(["--once"], tmp_path, env)
        took = time.monotonic() - started
    assert result.returncode == 1
    assert took < 4 + 10, took
    errors = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert len(errors) == 1, result.stderr
    assert url.split("/api/")[0] in errors[0] and "connection refused" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_project_gone_from_the_list_keeps_its_name_across_a_restart(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """A new pusher process learns the names already stored before its first push:
    a project no longer in the project list is never pushed as `unknown` beside its
    old name, and no day of it is counted twice."""
    today = int(clock.now) // DAY * DAY
    fake.add_project("proj_gone", "Gone Project")
    for k in range(5):
        fake.set_cost(today - k * DAY, "proj_gone", "gpt-4o, input", 1.0 + k)
    first = _confirming(fake, vm, clock, after_s=30.0)
    assert first.run_cycle().ok
    fake.remove_project("proj_gone")
    vm.flush()  # a restart comes later than the few seconds search takes to see it
    restarted = _confirming(fake, vm, clock, after_s=30.0)
    clock.now += 900
    assert restarted.run_cycle().ok
    names = {
        s.metric["project"]
        for s in vm.export('{__name__=~"openai_daily_cost|openai_cost_today"}')
    }
    assert names == {"gone_project"}
    rows = vm.query(
        'sum(last_over_time(openai_daily_cost{project_id="proj_gone"}[1d]))',
        at=today + DAY - 1,
    )
    assert float(rows[0]["value"][1]) == 1.0


def test_data_a_crashed_vmagent_lost_is_pushed_again_without_a_read_back(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock, tmp_path: Path
) -> None:
    """Through vmagent, whose remote is down: vmagent accepts the push, is killed
    with SIGKILL and loses it. The pusher cannot read back through vmagent, says so,
    and pushes each pushed day again within the next hour: the data lands once the
    agent and its remote are back, with no pusher restart."""
    today = int(clock.now) // DAY * DAY
    seed_odd_org(fake, today, days_back=5)
    expected = fake_costs(fake, today - 30 * DAY, today + DAY)
    vm.kill()  # the agent's remote is down
    agent = VmAgent(tmp_path, vm)
    try:
        mono = [1000.0]
        stop = threading.Event()
        pusher = make_pusher(fake, agent.push_url, clock)
        pusher.reader = VmReader(
            make_session(),
            query_root(agent.push_url),  # vmagent has no export: refused
            authorization=None,
            timeouts=Timeouts(2.0, 5.0),
            stop=stop,
            retrying=lambda: retry_policy(5, stop),
        )
        pusher.monotonic = lambda: mono[0]
        assert pusher.run_cycle().ok  # accepted by the agent
        time.sleep(1.0)
        agent.kill()
        vm.restart()
        agent.restart()
        time.sleep(5.0)
        assert len(vm_costs(vm)) < len(expected)  # the agent lost what it accepted
        mono[0] += 60
        clock.now += 900
        again = pusher.run_cycle()
        assert again.ok and pusher.reader is None
        deadline = time.monotonic() + 30
        while len(vm_costs(vm)) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert_equal_costs(expected, vm_costs(vm))
    finally:
        agent.stop()


def test_days_before_the_lookback_are_kept_as_totals_and_a_larger_stored_value_settles(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """After a backfill the ledger keeps values series by series only for the
    lookback; older days are kept as their count and sum, which is what the
    read-back compares. A store holding a larger value on such a day (pushed before
    a downward revision, by a pusher that has since restarted) differs in its sum:
    the day is pushed again whole and compared series by series, the larger value
    is accepted as held, and the cycles after push nothing more for it."""
    today = int(clock.now) // DAY * DAY
    old = today - 10 * DAY
    seed_odd_org(fake, today)
    first = _confirming(fake, vm, clock, after_s=0.0)
    assert first.run_cycle().ok
    key = next(k for k in fake.costs() if k[0] == old and k[1] == "proj_intl")
    value = fake.costs()[key]
    fake.set_cost(old, key[1], key[2], value / 2)  # revised down; the store keeps more
    expected = fake_costs(fake, today - 30 * DAY, today + DAY)
    expected[(key[1] or "", key[2] or "", key[3], old * 1000)] = value
    vm.flush()

    pusher = _confirming(fake, vm, clock, after_s=0.0)  # a restart: an empty ledger
    backfill = pusher.run_cycle()
    assert backfill.ok and backfill.get("costs").landed_days == 31
    ledger = pusher.costs.ledger
    lookback_ms = (today - 2 * DAY) * 1000
    summarized = ledger.summarized_between(0, lookback_ms)
    assert summarized == [
        day * 1000 for day in range(today - 30 * DAY, today - 2 * DAY, DAY)
    ]
    assert ledger.summarized_between(lookback_ms, (today + DAY) * 1000) == []
    held = ledger.held_between(0, (today + DAY) * 1000)
    assert held == backfill.get("costs").samples - len(ODD_PROJECTS) - 1  # no live

    vm.flush()
    clock.now += 900
    again = pusher.run_cycle()  # the old day's sum differs: pushed again whole
    assert again.ok
    assert pusher.costs.whole == {old}
    assert (old * 1000) not in ledger.summarized_between(0, lookback_ms)
    days = {k[3] for k in expected}
    pushed = again.get("costs").landed_days
    assert pushed == len({d for d in days if d >= old * 1000})

    vm.flush()
    clock.now += 900
    settled = pusher.run_cycle()  # compared series by series: the larger is held
    assert settled.ok
    assert pusher.costs.whole == set()
    assert pusher.stats.unconfirmed["costs"] == 0
    assert old * 1000 in ledger.summarized_between(0, lookback_ms)
    clock.now += 900
    steady = pusher.run_cycle()
    assert steady.ok and steady.get("costs").window.start == today - 2 * DAY
    vm.flush()
    assert_equal_costs(expected, vm_costs(vm))
