"""Which pushed days the store has confirmed: an acknowledgement is not landing.

VictoriaMetrics answers `204` before the data is durable (`-inmemoryDataFlushInterval`,
5 s by default): killed a few seconds after a push, it keeps none of it. So a pushed day
is *pending* until it has been read back, at least `CONFIRM_AFTER_S` after its last
push, and found whole; values the store lacks are forgotten by the ledger and pushed
again. Where nothing can be read back (vmagent without `VM_QUERY_URL`), a pushed day is
pushed again every cycle for `BLIND_CONFIRM_S` after its first push instead.

Pure state and helpers: times come in as arguments (monotonic seconds), and the reads
are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from openai_cost_pusher.model import Labels

CONFIRM_AFTER_S = 30.0
"""A day is read back no sooner than this after its last push: several flush intervals
of VictoriaMetrics (`-inmemoryDataFlushInterval`, 5 s by default)."""

BLIND_CONFIRM_S = 3600.0
"""Without a read-back, how long a pushed day keeps being pushed again."""

MAX_READ_DAYS = 1
"""Days read back in one request: one day of every series bounds the answer (and the
memory it takes) by the organization's size, not by the window's."""

Held = Callable[[str, Labels], Mapping[int, float] | None]
"""What the store holds for one series (timestamp in ms to value), or None."""


@dataclass(slots=True)
class _Day:
    first_push: float
    last_push: float
    samples: int


class Pending:
    """Days pushed but not yet confirmed, by their 00:00 UTC (Unix seconds)."""

    def __init__(self) -> None:
        self._days: dict[int, _Day] = {}

    def pushed(self, day: int, at: float, samples: int) -> None:
        """Record that `samples` values of `day` were pushed at `at`."""
        held = self._days.get(day)
        if held is None:
            if samples:
                self._days[day] = _Day(at, at, samples)
            return
        held.last_push = at
        held.samples += samples

    def due(self, at: float, after_s: float = CONFIRM_AFTER_S) -> list[int]:
        """Return the days last pushed at least `after_s` before `at`, oldest first."""
        return sorted(
            d for d, held in self._days.items() if at - held.last_push >= after_s
        )

    def first_push(self, day: int) -> float:
        """Return when `day` was first pushed since it was last confirmed."""
        return self._days[day].first_push

    def confirmed(self, day: int) -> None:
        """Record that the store holds every value of `day`."""
        self._days.pop(day, None)

    def forget_before(self, day: int) -> None:
        """Drop days before `day`: they are past the healing horizon."""
        for old in [d for d in self._days if d < day]:
            del self._days[old]

    @property
    def samples(self) -> int:
        """Return how many pushed values wait for confirmation."""
        return sum(held.samples for held in self._days.values())

    def oldest_age(self, at: float) -> float:
        """Return the age of the oldest unconfirmed push (0 when none)."""
        first = min((held.first_push for held in self._days.values()), default=at)
        return max(0.0, at - first)

    def __len__(self) -> int:
        return len(self._days)


def _key(name: str, pairs: Iterable[tuple[str, str]]) -> tuple[str, Labels]:
    # VictoriaMetrics stores no empty label: `project_id=""` is an absent label
    return name, tuple(sorted((k, v) for k, v in pairs if v and k != "__name__"))


def held_by(series: Iterable[tuple[Labels, Mapping[int, float]]]) -> Held:
    """Return a lookup of exported series (labels with `__name__`, points) by the
    name and labels a sample was pushed with."""
    index: dict[tuple[str, Labels], Mapping[int, float]] = {}
    for labels, points in series:
        name = dict(labels).get("__name__", "")
        key = _key(name, labels)
        before = index.get(key)
        # the export merges a series' lines already: copy only a rare duplicate
        index[key] = points if before is None else {**before, **points}

    def held(name: str, labels: Labels) -> Mapping[int, float] | None:
        return index.get(_key(name, labels))

    return held


def read_ranges(days: Iterable[int], day_s: int = 86_400) -> list[tuple[int, int]]:
    """Return `[start, end)` ranges (Unix seconds) covering `days`: runs of
    consecutive days, at most `MAX_READ_DAYS` each."""
    ranges: list[tuple[int, int]] = []
    for day in sorted(set(days)):
        if (
            ranges
            and ranges[-1][1] == day
            and day - ranges[-1][0] < MAX_READ_DAYS * day_s
        ):
            ranges[-1] = (ranges[-1][0], day + day_s)
        else:
            ranges.append((day, day + day_s))
    return ranges
