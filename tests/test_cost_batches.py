"""Costs sent again are not parsed: each results batch of the lookback that comes back
byte for byte adds what it added last cycle, and the store still equals the API.

End to end against the fake Admin API and a real VictoriaMetrics (days cut into
several batches), and `batches.add_cost_parts` alone against parsing every line.
"""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher import tables
from openai_cost_pusher.batches import (
    COST_KEY,
    KEY_COST_KEY,
    CostBatches,
    add_cost_parts,
)
from openai_cost_pusher.metrics import (
    CostColumns,
    CostKey,
    add_cost_lines,
    add_key_cost_lines,
)
from openai_cost_pusher.model import Columns, CostLine, CostParts
from openai_cost_pusher.parsers import NOT_PARSED
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI
from tests.orgs import (
    DAY,
    assert_equal_costs,
    fake_costs,
    make_pusher,
    spy_on_parsed_cost_batches,
    vm_costs,
)
from tests.vm import VictoriaMetrics

PROJECTS = {f"proj_{i}": f"Project {i}" for i in range(6)}
ITEMS = ("gpt-4o, input", "gpt-4o, output", "web search", "fine-tuning")
UNITS = {"gpt-4o, input": "tokens", "gpt-4o, output": "tokens", "web search": None}
BATCH_BYTES = 700
"""A few results a batch: each day comes in several batches."""

QuantityKey = tuple[str, str, str, int]


def _seed(fake: FakeOpenAI, today: int, days: int, seed: int = 3) -> None:
    """Projects with costs on every line item, quantities on all but fine-tuning,
    and costs without a project, for `days` days before today and today."""
    rng = random.Random(seed)
    for project_id, name in PROJECTS.items():
        fake.add_project(project_id, name)
    for day in range(today - days * DAY, today + DAY, DAY):
        for owner in [*PROJECTS, None]:
            for item in ITEMS:
                fake.set_cost(
                    day,
                    owner,
                    item,
                    rng.uniform(0.001, 90.0),
                    quantity=None if item == "fine-tuning" else rng.uniform(1, 1e6),
                    quantity_unit=UNITS.get(item),
                )


def _fake_quantities(fake: FakeOpenAI, start: int) -> dict[QuantityKey, float]:
    return {
        (pid or "", item or "", unit or "", day * 1000): quantity
        for (day, pid, item, _), (quantity, unit) in fake.quantities().items()
        if day >= start
    }


def _vm_quantities(vm: VictoriaMetrics) -> dict[QuantityKey, float]:
    out: dict[QuantityKey, float] = {}
    for series in vm.export('{__name__="openai_daily_cost_quantity"}'):
        m = series.metric
        for ts, value in zip(series.timestamps, series.values, strict=True):
            key = (m.get("project_id", ""), m["line_item"], m.get("unit", ""), ts)
            assert key not in out, f"two series hold {key}"
            out[key] = value
    return out


def _assert_store_equals_api(fake: FakeOpenAI, vm: VictoriaMetrics, start: int) -> None:
    assert_equal_costs(fake_costs(fake, start, start + 400 * DAY), vm_costs(vm, None))
    assert _vm_quantities(vm) == pytest.approx(_fake_quantities(fake, start), rel=1e-12)


def _today(clock: Clock) -> int:
    return int(clock.now) // DAY * DAY


def test_costs_sent_again_are_not_parsed(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady cycle parses none of the costs it was sent before byte for byte;
    a changed day is the only one parsed, and lands, costs and quantities alike.
    Only the lookback's batches (3 days) are kept, and no value goes missing."""
    today = _today(clock)
    _seed(fake, today, days=8)
    parsed = spy_on_parsed_cost_batches(monkeypatch, BATCH_BYTES)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=8)
    assert pusher.run_cycle().ok
    per_day = {day: parsed.count(day) for day in set(parsed)}
    assert len(per_day) == 9 and min(per_day.values()) >= 3  # days come in batches
    kept = pusher.tables.kept_costs["costs"].batches
    assert len(kept) == sum(n for day, n in per_day.items() if day >= today - 2 * DAY)
    start = today - 8 * DAY
    _assert_store_equals_api(fake, vm, start)
    for _ in range(2):
        parsed.clear()
        clock.now += 60
        report = pusher.run_cycle()
        assert report.ok
        assert parsed == []
        # only today's live totals, one per owner: no day changed
        assert report.get("costs").samples == len(PROJECTS) + 1
    fake.set_cost(
        today - DAY,
        "proj_2",
        "gpt-4o, input",
        120.25,
        quantity=2e6,
        quantity_unit="tokens",
    )  # up
    parsed.clear()
    clock.now += 60
    report = pusher.run_cycle()
    assert report.ok
    assert set(parsed) == {today - DAY}
    assert 0 < len(parsed) < per_day[today - DAY]  # the changed batch, not the day
    assert report.get("costs").samples > len(PROJECTS) + 1  # the day, pushed again
    _assert_store_equals_api(fake, vm, start)
    assert pusher.stats.downward_revisions == 0


def test_a_renewed_index_leaves_the_kept_costs_behind(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the costs tables' series numbers are renewed, what the batches added
    under the old numbers is not added again: every batch is parsed, and every
    value still lands on its own series."""
    today = _today(clock)
    _seed(fake, today, days=3)
    monkeypatch.setattr(tables, "SERIES_SLACK", -(10**9))  # renewed every cycle
    parsed = spy_on_parsed_cost_batches(monkeypatch, BATCH_BYTES)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=3)
    assert pusher.run_cycle().ok
    unchanged = {day: parsed.count(day) for day in (today - DAY, today - 2 * DAY)}
    for cost in (1.5, 2.5):
        parsed.clear()
        clock.now += 60
        fake.set_cost(today, "proj_1", "web search", 100 + cost, quantity=2e6 + cost)
        assert pusher.run_cycle().ok
        assert {day: parsed.count(day) for day in unchanged} == unchanged
        _assert_store_equals_api(fake, vm, today - 3 * DAY)


def test_kept_costs_are_bounded(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `COST_VALUES_KEPT` values, the other batches are parsed every cycle,
    and the store still equals the API."""
    today = _today(clock)
    _seed(fake, today, days=3)
    monkeypatch.setattr(tables, "COST_VALUES_KEPT", 40)
    parsed = spy_on_parsed_cost_batches(monkeypatch, BATCH_BYTES)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=3)
    assert pusher.run_cycle().ok
    kept = pusher.tables.kept_costs["costs"].batches
    held = sum(len(b[1]) + len(b[3]) for b in kept.values())
    assert 0 < held <= 40
    lookback = len([day for day in parsed if day >= today - 2 * DAY])
    parsed.clear()
    clock.now += 60
    fake.set_cost(
        today, "proj_0", "gpt-4o, output", 100.5, quantity=2e6, quantity_unit="tokens"
    )
    assert pusher.run_cycle().ok
    assert len(parsed) == lookback - len(kept)
    _assert_store_equals_api(fake, vm, today - 3 * DAY)


# -- add_cost_parts alone -------------------------------------------------------------

_LINE = st.builds(
    CostLine,
    day=st.just(0),
    project_id=st.sampled_from(["p1", "p2", ""]),
    line_item=st.sampled_from(["in", "out"]),
    currency=st.sampled_from(["usd", "eur"]),
    value=st.floats(-1e6, 1e6, allow_nan=False),
    quantity=st.none() | st.floats(0, 1e9, allow_nan=False),
    quantity_unit=st.sampled_from(["tokens", ""]),
    api_key_id=st.sampled_from(["k1", "k2", ""]),
)
_DAY = st.lists(st.lists(_LINE, max_size=6), max_size=4)
"""One day's results batches."""


def _parts(days: list[list[list[CostLine]]], known: set[int]) -> list[CostParts]:
    """Each day as a bucket of numbered batches; batch numbers in `known` come
    unparsed, as `fetch_cost_parts` hands on batches whose digest it was given."""
    out: list[CostParts] = []
    number = 0
    for d, batches in enumerate(days):
        lines: list[CostLine] = []
        handed: list[tuple[bytes, int]] = []
        for batch in batches:
            digest = b"%d" % number
            if number in known:
                handed.append((digest, NOT_PARSED))
            else:
                lines += [line._replace(day=d * DAY) for line in batch]
                handed.append((digest, len(batch)))
            number += 1
        out.append(CostParts(d * DAY, lines, tuple(handed)))
    return out


def _columns(table: CostColumns, days: int) -> list[bytes]:
    return [array("d", dict(table.at(d * DAY)).values()).tobytes() for d in range(days)]


@settings(max_examples=200, deadline=None)
@given(
    days=st.lists(_DAY, min_size=1, max_size=3),
    keep=st.sets(st.integers(0, 12)),
    by_key=st.booleans(),
)
def test_known_batches_add_what_parsing_them_added(
    days: list[list[list[CostLine]]], keep: set[int], by_key: bool
) -> None:
    """Every batch parsed, the tables hold what the plain path (`add_cost_lines`,
    `add_key_cost_lines`) gives. Added with some batches kept from the last time, a
    fetch gives the tables it gives with every batch parsed, bit for bit: values
    summed on one series are summed in the same order. Only the days from
    `keep_from` on are kept, within the budget."""
    index: dict[CostKey, int] = {}
    units: dict[CostKey, int] = {}
    key = KEY_COST_KEY if by_key else COST_KEY

    def fresh_tables() -> tuple[CostColumns, CostColumns | None]:
        return Columns(index), None if by_key else Columns(units)

    table, quantities = fresh_tables()
    kept: CostBatches = {}
    held = add_cost_parts(
        _parts(days, set()), table, quantities, {}, kept, 0, 1 << 20, key
    )
    assert held == sum(len(b[1]) + len(b[3]) for b in kept.values())
    # the same series and sums as the plain path (`add_cost_lines`) gives
    plain: CostColumns = Columns()
    plain_quantities: CostColumns = Columns()
    lines = [line for part in _parts(days, set()) for line in part.lines]
    if by_key:
        add_key_cost_lines(plain, lines)
    else:
        add_cost_lines(plain, lines, plain_quantities)
    for d in range(len(days)):
        assert dict(table.at(d * DAY)) == dict(plain.at(d * DAY))
        if quantities is not None:
            assert dict(quantities.at(d * DAY)) == dict(plain_quantities.at(d * DAY))
    again, again_quantities = fresh_tables()
    known = {n for n in keep if b"%d" % n in kept}
    add_cost_parts(_parts(days, known), again, again_quantities, kept, {}, 0, 0, key)
    assert _columns(again, len(days)) == _columns(table, len(days))
    if quantities is not None and again_quantities is not None:
        assert _columns(again_quantities, len(days)) == _columns(quantities, len(days))
    # only the days from keep_from on, and no more values than the budget
    later: CostBatches = {}
    budget = 7
    held = add_cost_parts(
        _parts(days, set()), *fresh_tables(), {}, later, DAY, budget, key
    )
    assert held == sum(len(b[1]) + len(b[3]) for b in later.values()) <= budget
    first_day = {b"%d" % n for n in range(len(days[0]))}
    assert not first_day & later.keys()
