"""Which UTC days a cycle fetches and pushes: lookback, backfill and healing.

`lookback` counts buckets with the current one (3 = today and the two days before);
`backfill` counts complete buckets before the current one (30 = the 30 complete days
before today, plus today), so that `verify --days 30` right after a default backfill
compares 30 days that were all pushed. Pure arithmetic on Unix seconds. A day is
identified by its 00:00 UTC epoch second. The caller keeps `unpushed_from`, the oldest
day whose data is not known to have landed, and passes it in; this module never reads
the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400


def day_of(ts: float) -> int:
    """Return the 00:00 UTC epoch second of the day that holds `ts`."""
    return int(ts // DAY) * DAY


@dataclass(frozen=True, slots=True)
class Window:
    """A run of whole UTC days `[start, end)`, in Unix seconds."""

    start: int
    end: int

    @property
    def days(self) -> int:
        """Return how many days the window spans."""
        return (self.end - self.start) // DAY

    def __contains__(self, day: object) -> bool:
        return isinstance(day, int) and self.start <= day < self.end


def cycle_window(
    now: float,
    lookback: int,
    backfill: int,
    unpushed_from: int | None,
    unit: int = DAY,
) -> Window:
    """Return the buckets one cycle fetches, as `[start, end)` in Unix seconds.

    Normally the last `lookback` buckets of `unit` seconds (days for costs), the
    current one included. When `unpushed_from` is set (the first cycle after start,
    or buckets a failed cycle did not land) the window reaches back to it, but never
    past the healing horizon (`horizon`).
    """
    current = int(now // unit) * unit
    start = current - (lookback - 1) * unit
    if unpushed_from is not None:
        start = max(
            min(start, unpushed_from // unit * unit),
            horizon(now, lookback, backfill, unit),
        )
    return Window(start=start, end=current + unit)


def horizon(now: float, lookback: int, backfill: int, unit: int = DAY) -> int:
    """Return the oldest bucket a cycle may fetch: the backfill's first, or older
    when the lookback reaches further."""
    current = int(now // unit) * unit
    return current - max(lookback - 1, backfill) * unit


def first_unpushed(now: float, backfill: int, unit: int = DAY) -> int:
    """Return the `unpushed_from` that makes the first cycle a full backfill:
    `backfill` complete buckets before the current one."""
    return int(now // unit) * unit - backfill * unit


def complete_days(now: float, days: int, *, include_today: bool = False) -> Window:
    """Return the `days` complete UTC days before today, and today when asked."""
    today = day_of(now)
    return Window(today - days * DAY, today + DAY if include_today else today)
