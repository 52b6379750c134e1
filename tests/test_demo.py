"""Test the simulated organization behind `--demo`.

It must exercise what real organizations do: several projects, an archived one, a
non-Latin name, costs without a project, a month of history, a spike in
`proj_demo_chat`, and answers that do not change when a day is fetched again.
"""

from __future__ import annotations

import statistics
import unicodedata

import pytest

from openai_cost_pusher.demo import (
    DEMO_LABEL,
    PROJECTS,
    SPIKE_PROJECT,
    DemoOrganization,
)
from openai_cost_pusher.metrics import normalize_name
from openai_cost_pusher.model import CostLine
from openai_cost_pusher.window import DAY

T0 = 1_730_419_200  # 2024-11-01 00:00 UTC, a Friday
LATE = 23 * 3600  # 23:00 UTC: today's costs have nearly all arrived


def _fetch(
    now: float, days: int, org: DemoOrganization | None = None
) -> list[CostLine]:
    """Return every cost line of the `days` days up to today, seen at `now`."""
    org = org or DemoOrganization(lambda: now)
    today = int(now // DAY) * DAY
    return [
        line
        for page in org.fetch_costs(today - (days - 1) * DAY, today + DAY)
        for line in page
    ]


def _per_day(lines: list[CostLine], project_id: str) -> dict[int, float]:
    totals: dict[int, float] = {}
    for line in lines:
        if line.project_id == project_id:
            totals[line.day] = totals.get(line.day, 0.0) + line.value
    return totals


def test_several_projects_with_an_archived_one() -> None:
    """The project list has several distinct projects, one of them archived."""
    ids = [p.id for p in PROJECTS]
    assert len(ids) >= 4
    assert len(set(ids)) == len(ids)
    assert [p.archived for p in PROJECTS].count(True) >= 1
    org = DemoOrganization(lambda: T0)
    assert org.fetch_projects() == list(PROJECTS)


def test_a_project_with_non_latin_letters() -> None:
    """A project name has letters outside the Latin script that normalization keeps."""

    def non_latin(ch: str) -> bool:
        return ch.isalpha() and "LATIN" not in unicodedata.name(ch, "")

    names = [p.name or "" for p in PROJECTS]
    assert any(non_latin(ch) for name in names for ch in name)
    assert any(any(non_latin(ch) for ch in normalize_name(n)) for n in names)


def test_archived_project_has_history_only() -> None:
    """The archived project has costs in the past but none in the last days."""
    archived = {p.id for p in PROJECTS if p.archived}
    per_day = {pid: _per_day(_fetch(T0 + LATE, 30), pid) for pid in archived}
    for days in per_day.values():
        assert days
        assert T0 not in days
        assert T0 - DAY not in days


def test_unattributed_costs_every_day() -> None:
    """Costs without a project appear on every day of the month."""
    lines = _fetch(T0 + LATE, 30)
    assert set(_per_day(lines, "")) == {T0 - k * DAY for k in range(30)}


def test_thirty_days_of_history() -> None:
    """A 30-day backfill gets one page per day, all in USD, all positive."""
    now = T0 + LATE
    org = DemoOrganization(lambda: now)
    pages = list(org.fetch_costs(T0 - 29 * DAY, T0 + DAY))
    assert len(pages) == 30
    assert [{line.day for line in page} for page in pages] == [
        {T0 - k * DAY} for k in range(29, -1, -1)
    ]
    lines = [line for page in pages for line in page]
    assert {line.currency for line in lines} == {"usd"}
    assert all(line.value > 0 for line in lines)
    known = {p.id for p in PROJECTS} | {""}
    assert {line.project_id for line in lines} <= known
    assert len({line.line_item for line in lines}) >= 5


def test_never_answers_for_future_days() -> None:
    """Days after today get no page: costs never lie in the future."""
    org = DemoOrganization(lambda: T0 + LATE)
    pages = list(org.fetch_costs(T0, T0 + 5 * DAY))
    assert len(pages) == 1
    assert {line.day for line in pages[0]} == {T0}


@pytest.mark.parametrize("days_after", range(7), ids=lambda d: f"T0+{d}d")
@pytest.mark.parametrize("hour", [0, 6, 23])
def test_spike_today_in_chat(days_after: int, hour: int) -> None:
    """At any hour, chat's spend today exceeds 1.5x the median of 7 days before."""
    today = T0 + days_after * DAY
    totals = _per_day(_fetch(today + hour * 3600, 8), SPIKE_PROJECT)
    median = statistics.median(totals[today - k * DAY] for k in range(1, 8))
    assert totals[today] > 1.5 * median
    for other in {p.id for p in PROJECTS if p.id != SPIKE_PROJECT}:
        days = _per_day(_fetch(today + LATE, 8), other)
        if today in days:
            assert days[today] < 1.5 * statistics.median(
                days[today - k * DAY] for k in range(1, 8)
            )


def test_same_clock_same_answer() -> None:
    """Fetching twice at the same clock, or from a new instance, gives equal lines."""
    now = T0 + 13 * 3600 + 7
    org = DemoOrganization(lambda: now)
    first = _fetch(now, 30, org)
    assert _fetch(now, 30, org) == first
    assert _fetch(now, 30) == first


def test_today_grows_past_days_stay() -> None:
    """Later in the day today's costs grow while earlier days keep their values."""
    clock = [T0 + 6 * 3600.0]
    org = DemoOrganization(lambda: clock[0])
    morning = _fetch(clock[0], 3, org)
    clock[0] = T0 + 18 * 3600.0
    evening = _fetch(clock[0], 3, org)
    assert [x for x in morning if x.day < T0] == [x for x in evening if x.day < T0]
    before = {(x.project_id, x.line_item): x.value for x in morning if x.day == T0}
    after = {(x.project_id, x.line_item): x.value for x in evening if x.day == T0}
    assert before.keys() == after.keys()
    assert all(after[k] > before[k] for k in before)


def test_no_downward_revision_across_midnight() -> None:
    """A day fetched late on the day and again the next day never goes down."""
    clock = [T0 + LATE + 3599.0]
    org = DemoOrganization(lambda: clock[0])
    last_evening = {
        (x.day, x.project_id, x.line_item): x.value for x in _fetch(clock[0], 3, org)
    }
    clock[0] = T0 + DAY + 600.0
    next_day = {
        (x.day, x.project_id, x.line_item): x.value for x in _fetch(clock[0], 3, org)
    }
    assert {key[0] for key in last_evening} & {key[0] for key in next_day} == {
        T0 - DAY,
        T0,
    }
    for key, value in last_evening.items():
        if key in next_day:
            assert next_day[key] >= value, key


def test_demo_label() -> None:
    """Demo samples are marked with demo="true"."""
    assert DEMO_LABEL == ("demo", "true")
