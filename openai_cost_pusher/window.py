"""Which UTC days a cycle fetches and pushes: lookback, backfill and healing.

Pure arithmetic on Unix seconds. A day is identified by its 00:00 UTC epoch second. The
caller keeps `unpushed_from`, the oldest day whose data is not known to have landed, and
passes it in; this module never reads the clock.
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
    now: float, lookback_days: int, backfill_days: int, unpushed_from: int | None
) -> Window:
    """Return the days one cycle fetches.

    Normally the last `lookback_days` days, today included. When `unpushed_from` is
    set (the first cycle after start, or days a failed cycle did not land) the window
    reaches back to it, but never further than `max(lookback, backfill)` days: older
    days are past the healing horizon.
    """
    today = day_of(now)
    start = today - (lookback_days - 1) * DAY
    if unpushed_from is not None:
        horizon = today - (max(lookback_days, backfill_days) - 1) * DAY
        start = max(min(start, day_of(unpushed_from)), horizon)
    return Window(start=start, end=today + DAY)


def first_unpushed(now: float, backfill_days: int) -> int:
    """Return the `unpushed_from` that makes the first cycle a full backfill."""
    return day_of(now) - (backfill_days - 1) * DAY
