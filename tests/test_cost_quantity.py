"""Cost quantities: `openai_daily_cost_quantity` from the costs results' `quantity`.

Costs grouped by line item carry the day's quantity and its unit (tokens, images,
GiB-hours...): stored per project, line item and unit at the day's 00:00 UTC, they
give a unit price (cost / quantity) and tell a volume rise from a price rise.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from openai_cost_pusher.metrics import (
    DAILY_COST_QUANTITY,
    CostTable,
    QuantityTable,
    add_cost_lines,
    quantity_samples,
)
from openai_cost_pusher.model import CostLine
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.vmread import VmReader, query_root
from tests.conftest import Clock
from tests.fake_openai import FakeOpenAI
from tests.orgs import DAY, make_pusher
from tests.vm import VictoriaMetrics

QUANTITY = '{__name__="openai_daily_cost_quantity"}'
# (project, line item) -> (cost, quantity, unit) of each day; quantity None: none given
ITEMS: dict[tuple[str | None, str | None], tuple[float, float | None, str | None]] = {
    ("proj_a", "gpt-4o, input"): (12.5, 5_000_000.0, "tokens"),
    ("proj_a", "gpt-4o, output"): (0.173915, 17_391.5, "1000_tokens"),
    ("proj_a", "vector store"): (0.75, 7.5, "gibibyte_hours"),
    ("proj_b", "gpt-4o, input"): (2.5, 1_000_000.0, "tokens"),
    ("proj_b", "web search"): (1.0, 100.0, None),  # a quantity without a unit
    ("proj_b", "fine-tuning"): (3.0, None, None),  # no quantity at all
    (None, "gpt-4o, input"): (0.25, 100_000.0, "tokens"),
}


def _seed(fake: FakeOpenAI, today: int, days: int) -> None:
    fake.add_project("proj_a", "Alpha")
    fake.add_project("proj_b", "Beta")
    for day in range(today - days * DAY, today + DAY, DAY):
        scale = 1 + (day - today) // DAY / 100  # a little change from day to day
        for (project_id, item), (cost, quantity, unit) in ITEMS.items():
            fake.set_cost(
                day,
                project_id,
                item,
                cost,
                quantity=None if quantity is None else quantity * scale,
                quantity_unit=unit,
            )


def test_quantities_and_units_are_stored_per_line_item_and_day(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """Each line item with a quantity has one sample a day, its unit as the API
    gives it (`""` for none); one without a quantity has no series. The answers
    come in the live forms: decimal-string amounts, `organization_id`, optional keys
    left out."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today, days=4)
    fake.decimal_amounts = True
    fake.omit_null_optionals = True
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=4)
    assert pusher.run_cycle().ok
    stored: dict[tuple[str, str, str, int], float] = {}
    for series in vm.export(QUANTITY):
        m = series.metric
        assert m["job"] == "test" and "currency" not in m
        for ts, value in zip(series.timestamps, series.values, strict=True):
            key = (m.get("project_id", ""), m["line_item"], m.get("unit", ""), ts)
            assert key not in stored
            stored[key] = value
            assert (
                m["project"]
                == {"proj_a": "alpha", "proj_b": "beta", "": ("unattributed")}[key[0]]
            )
    expected = {}
    for day in range(today - 4 * DAY, today + DAY, DAY):
        scale = 1 + (day - today) // DAY / 100
        for (project_id, item), (_, quantity, unit) in ITEMS.items():
            if quantity is not None:
                key = (project_id or "", item or "", unit or "", day * 1000)
                expected[key] = quantity * scale
    assert stored == pytest.approx(expected, rel=1e-12)
    # the decimal strings ("12.50", "0.1739150000000000000000000000") parse exactly
    costs = {
        (s.metric.get("project_id", ""), s.metric["line_item"]): s.values
        for s in vm.export('{__name__="openai_daily_cost"}')
    }
    assert set(costs[("proj_a", "gpt-4o, input")]) == {12.5}
    assert set(costs[("proj_a", "gpt-4o, output")]) == {0.173915}
    assert ("proj_b", "fine-tuning") in costs  # a cost without a quantity still is


def test_unit_price_query_gives_cost_per_unit(
    fake: FakeOpenAI, vm: VictoriaMetrics, clock: Clock
) -> None:
    """The README's unit-price query: cost / quantity per line item and day."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today, days=2)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=2)
    assert pusher.run_cycle().ok
    expr = (
        "sum by (project, line_item) (last_over_time(openai_daily_cost[1d]))"
        " / sum by (project, line_item) "
        "(last_over_time(openai_daily_cost_quantity[1d]))"
    )
    at = today - DAY + DAY - 1  # the end of yesterday
    rows = {
        (r["metric"]["project"], r["metric"]["line_item"]): float(r["value"][1])
        for r in vm.query(expr, at)
    }
    scale = 1 - 1 / 100
    assert rows == pytest.approx(
        {
            ("alpha", "gpt-4o, input"): 12.5 / (5_000_000 * scale),
            ("alpha", "gpt-4o, output"): 0.173915 / (17_391.5 * scale),
            ("alpha", "vector store"): 0.75 / (7.5 * scale),
            ("beta", "gpt-4o, input"): 2.5 / (1_000_000 * scale),
            ("beta", "web search"): 1.0 / (100 * scale),
            ("unattributed", "gpt-4o, input"): 0.25 / (100_000 * scale),
        },
        rel=1e-9,
    )


def test_quantities_are_confirmed_by_the_read_back(
    fake: FakeOpenAI,
    vm: VictoriaMetrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The costs data set's read-back counts the quantities too: every value is
    confirmed, none is taken for lost and pushed again."""
    today = int(clock.now) // DAY * DAY
    _seed(fake, today, days=3)
    pusher = make_pusher(fake, vm.push_url, clock, backfill_days=3)
    stop = threading.Event()
    pusher.reader = VmReader(
        make_session(),
        query_root(vm.push_url),
        authorization=None,
        timeouts=Timeouts(2.0, 5.0),
        stop=stop,
        retrying=lambda: retry_policy(5, stop),
    )
    pusher.confirm_after_s = 0.5
    first = pusher.run_cycle()
    assert first.ok
    # 4 days: 7 costs and 6 quantities a day
    assert pusher.stats.unconfirmed["costs"] == 4 * (7 + 6)
    vm.flush()
    time.sleep(1.0)
    clock.now += 900
    with caplog.at_level(logging.WARNING):
        second = pusher.run_cycle()
    assert second.ok
    assert pusher.stats.unconfirmed["costs"] == 0
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
    # only the live series: two projects and the costs without a project
    assert second.get("costs").samples == 3
    assert not [s for s in vm.export(QUANTITY) if len(s.values) != 4]


def test_quantities_sum_per_series_and_day_and_skip_lines_without_one() -> None:
    """Lines that share project, line item, unit and day are summed; a line without
    a quantity adds none; the unit is a label (`""`, absent, where null)."""
    d = 1_764_979_200
    lines = [
        CostLine(d, "p", "in", "usd", 1.0, 10.0, "tokens"),
        CostLine(d, "p", "in", "eur", 2.0, 5.0, "tokens"),
        CostLine(d, "p", "in", "usd", 1.0, None, ""),
        CostLine(d + DAY, "p", "in", "usd", 1.0, 7.0, ""),
    ]
    table: CostTable = {}
    quantities: QuantityTable = {}
    add_cost_lines(table, lines, quantities)
    assert {k: dict(v.items()) for k, v in quantities.items()} == {
        ("p", "in", "tokens"): {d: 15.0},
        ("p", "in", ""): {d + DAY: 7.0},
    }
    samples = list(quantity_samples(quantities, {"p": "Proj"}, (("job", "x"),)))
    assert {(s.name, s.labels, s.value, s.ts_ms) for s in samples} == {
        (
            DAILY_COST_QUANTITY,
            (
                ("job", "x"),
                ("line_item", "in"),
                ("project", "proj"),
                ("project_id", "p"),
                ("unit", "tokens"),
            ),
            15.0,
            d * 1000,
        ),
        (
            DAILY_COST_QUANTITY,
            (
                ("job", "x"),
                ("line_item", "in"),
                ("project", "proj"),
                ("project_id", "p"),
                ("unit", ""),
            ),
            7.0,
            (d + DAY) * 1000,
        ),
    }
