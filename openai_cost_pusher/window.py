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
    further than `max(lookback, backfill)` buckets: older ones are past the healing
    horizon.
    """
    current = int(now // unit) * unit
    start = current - (lookback - 1) * unit
    if unpushed_from is not None:
        horizon = current - (max(lookback, backfill) - 1) * unit
        start = max(min(start, unpushed_from // unit * unit), horizon)
    return Window(start=start, end=current + unit)


def first_unpushed(now: float, backfill: int, unit: int = DAY) -> int:
    """Return the `unpushed_from` that makes the first cycle a full backfill."""
    return int(now // unit) * unit - (backfill - 1) * unit
