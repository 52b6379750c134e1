"""Test which UTC days a cycle fetches: lookback, first-cycle backfill and healing.

All times are Unix seconds; a day is its 00:00 UTC epoch second. T0 is 2024-11-01.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openai_cost_pusher.window import (
    DAY,
    Window,
    complete_days,
    cycle_window,
    day_of,
    first_unpushed,
)

T0 = 1_730_419_200  # 2024-11-01 00:00 UTC
NOW = T0 + 10 * 3600 + 17 * 60 + 3.25  # 10:17:03.25 on T0


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (T0, T0),
        (T0 - 0.001, T0 - DAY),
        (T0 + 0.001, T0),
        (T0 + DAY - 0.001, T0),
        (T0 + DAY, T0 + DAY),
        (NOW, T0),
        (0, 0),
        (0.5, 0),
        (DAY - 0.001, 0),
    ],
    ids=[
        "midnight",
        "1ms-before",
        "1ms-after",
        "last-ms",
        "next-midnight",
        "now",
        "epoch",
        "epoch+0.5s",
        "epoch-last-ms",
    ],
)
def test_day_of(ts: float, expected: int) -> None:
    """A time belongs to the UTC day whose midnight is at or before it."""
    assert day_of(ts) == expected
    assert isinstance(day_of(ts), int)


@pytest.mark.parametrize("lookback", [1, 3, 7])
def test_lookback_window(lookback: int) -> None:
    """Without unpushed days, the window is the last `lookback` days, today included."""
    window = cycle_window(NOW, lookback, 30, None)
    assert window == Window(start=T0 - (lookback - 1) * DAY, end=T0 + DAY)
    assert window.days == lookback


@pytest.mark.parametrize(("backfill", "lookback"), [(30, 3), (1, 1), (7, 3), (3, 3)])
def test_first_cycle_backfills(backfill: int, lookback: int) -> None:
    """The first cycle covers `backfill_days` complete days, plus today."""
    window = cycle_window(NOW, lookback, backfill, first_unpushed(NOW, backfill))
    assert window == Window(start=T0 - backfill * DAY, end=T0 + DAY)
    assert window.days == backfill + 1


@pytest.mark.parametrize("days", [1, 7, 30])
def test_complete_days_after_a_backfill_were_all_pushed(days: int) -> None:
    """`verify --days N` compares days the first cycle of a backfill of N pushed."""
    pushed = cycle_window(NOW, 3, 30, first_unpushed(NOW, 30))
    compared = complete_days(NOW, days)
    assert compared == Window(T0 - days * DAY, T0)
    assert pushed.start <= compared.start and compared.end <= pushed.end
    with_today = complete_days(NOW, days, include_today=True)
    assert with_today == Window(T0 - days * DAY, T0 + DAY)


def test_first_unpushed_is_a_midnight() -> None:
    """The first-cycle marker is the 00:00 UTC of the oldest backfill day."""
    assert first_unpushed(NOW, 30) == T0 - 30 * DAY
    assert first_unpushed(NOW, 1) == T0 - DAY


def test_backfill_shorter_than_lookback_keeps_lookback() -> None:
    """A backfill shorter than the lookback never shrinks the window."""
    window = cycle_window(NOW, 7, 3, first_unpushed(NOW, 3))
    assert window == Window(start=T0 - 6 * DAY, end=T0 + DAY)
    window = cycle_window(NOW, 4, 3, first_unpushed(NOW, 3))
    assert window == Window(start=T0 - 3 * DAY, end=T0 + DAY)


@pytest.mark.parametrize(
    ("unpushed_from", "start"),
    [
        (T0 - 5 * DAY, T0 - 5 * DAY),
        (T0 - 5 * DAY + 3 * 3600 + 0.5, T0 - 5 * DAY),  # mid-day: whole day healed
        (T0 - 2 * DAY, T0 - 2 * DAY),
        (T0 - DAY, T0 - 2 * DAY),  # inside the lookback: lookback wins
        (T0, T0 - 2 * DAY),
        (T0 - 29 * DAY, T0 - 29 * DAY),
        (T0 - 30 * DAY, T0 - 30 * DAY),
    ],
)
def test_healing_reaches_back_to_oldest_unpushed_day(
    unpushed_from: float, start: int
) -> None:
    """After failed pushes the window widens back to the oldest day not pushed."""
    window = cycle_window(NOW, 3, 30, int(unpushed_from))
    assert window == Window(start=start, end=T0 + DAY)


@pytest.mark.parametrize(
    ("lookback", "backfill", "unpushed_from", "start"),
    [
        (3, 30, T0 - 31 * DAY, T0 - 30 * DAY),
        (3, 30, T0 - 400 * DAY, T0 - 30 * DAY),
        (40, 30, T0 - 100 * DAY, T0 - 39 * DAY),
        (3, 3, T0 - 10 * DAY, T0 - 3 * DAY),
        (1, 1, T0 - 2 * DAY, T0 - DAY),
    ],
)
def test_healing_horizon(
    lookback: int, backfill: int, unpushed_from: int, start: int
) -> None:
    """Healing reaches back no further than the backfill (complete days plus today)
    or the lookback, whichever is longer."""
    window = cycle_window(NOW, lookback, backfill, unpushed_from)
    assert window == Window(start=start, end=T0 + DAY)
    assert window.days == max(lookback, backfill + 1)


@pytest.mark.parametrize("now", [T0, T0 + 0.001, T0 + DAY - 0.001])
def test_window_at_day_edges(now: float) -> None:
    """At midnight and one ms before the next, the window ends at tomorrow 00:00."""
    assert cycle_window(now, 3, 30, None) == Window(T0 - 2 * DAY, T0 + DAY)


def test_window_one_ms_before_midnight_is_previous_day() -> None:
    """One ms before midnight the window still ends at that midnight."""
    assert cycle_window(T0 - 0.001, 3, 30, None) == Window(T0 - 3 * DAY, T0)


@given(
    now=st.floats(min_value=0, max_value=4_102_444_800),
    lookback=st.integers(min_value=1, max_value=400),
    backfill=st.integers(min_value=1, max_value=400),
    unpushed_days_ago=st.none() | st.integers(min_value=-2, max_value=1000),
)
def test_window_invariants(
    now: float, lookback: int, backfill: int, unpushed_days_ago: int | None
) -> None:
    """Windows are whole days, end at tomorrow 00:00 UTC and hold today."""
    today = day_of(now)
    unpushed = None if unpushed_days_ago is None else today - unpushed_days_ago * DAY
    window = cycle_window(now, lookback, backfill, unpushed)
    assert window.end == today + DAY
    assert window.start % DAY == 0
    assert lookback <= window.days <= max(lookback, backfill + 1)
    assert window.start <= now < window.end
    assert today in window
    if unpushed is not None and unpushed >= today - max(lookback - 1, backfill) * DAY:
        assert window.start <= day_of(unpushed)


def test_window_contains_whole_days_only() -> None:
    """`in` accepts int day starts within `[start, end)` and nothing else."""
    window = Window(T0 - 2 * DAY, T0 + DAY)
    assert T0 - 2 * DAY in window
    assert T0 in window
    assert T0 + DAY not in window
    assert T0 - 3 * DAY not in window
    assert float(T0) not in window
    assert "x" not in window
