"""Remember what was pushed, so a cycle pushes only new or changed daily values.

Pure state owned by one pusher instance (no module-level state). The ledger maps each
series to the values that last landed, by timestamp. It also spots downward revisions:
VictoriaMetrics' deduplication keeps the largest value at a timestamp, so a value
revised downwards cannot replace the stored one and must be reported instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from openai_cost_pusher.model import Labels, Points, Sample

Series = tuple[str, Labels]


@dataclass(frozen=True, slots=True)
class Revision:
    """A daily value that went down: `new` is None where the series disappeared."""

    name: str
    labels: Labels
    ts_ms: int
    old: float
    new: float | None


class Ledger:
    """The last value pushed for each series and timestamp, since start.

    Timestamps of one ledger lie on a grid of `step_ms` (a day for costs, the bucket
    width for usage), which lets each series be packed in a `Points` array.
    """

    def __init__(self, step_ms: int = 86_400_000) -> None:
        self._step = step_ms
        self._pushed: dict[Series, Points] = {}
        # how many values each timestamp holds: a commit that saw every value its
        # range held (or a range holding none, as in a backfill) has no value that
        # could have gone, and need not scan every series for one
        self._counts: dict[int, int] = {}

    def __len__(self) -> int:
        return sum(len(points) for points in self._pushed.values())

    def held_between(self, start_ms: int, end_ms: int) -> int:
        """Return how many values of `[start_ms, end_ms)` the ledger holds."""
        return sum(n for ts, n in self._counts.items() if start_ms <= ts < end_ms)

    def _count(self, ts_ms: int, delta: int) -> None:
        left = self._counts.get(ts_ms, 0) + delta
        if left:
            self._counts[ts_ms] = left
        else:
            self._counts.pop(ts_ms, None)

    def diff(
        self, samples: Iterable[Sample], revisions: list[Revision]
    ) -> tuple[list[Sample], int]:
        """Return the samples that are new or changed, and how many of `samples`
        the ledger already held a value for (changed or not), for `commit`.

        Each value lower than the one pushed before is also appended to `revisions`.
        """
        fresh: list[Sample] = []
        seen = 0
        pushed = self._pushed
        for sample in samples:
            points = pushed.get((sample.name, sample.labels))
            old = None if points is None else points.get(sample.ts_ms)
            if old is None:
                fresh.append(sample)
                continue
            seen += 1
            if old != sample.value:
                if sample.value < old:
                    revisions.append(
                        Revision(
                            sample.name, sample.labels, sample.ts_ms, old, sample.value
                        )
                    )
                fresh.append(sample)
        return fresh, seen

    def commit(
        self,
        samples: Sequence[Sample],
        start_ms: int,
        end_ms: int,
        fresh: tuple[Sequence[Sample], int] | None = None,
    ) -> list[Revision]:
        """Record that `samples`, the whole answer for `[start_ms, end_ms)`, landed.

        `fresh` is what `diff` returned for these samples: then only the new and
        changed samples are recorded (the others are held already), and where the
        answer had a sample for every value the ledger held, nothing is scanned.
        Returns the series and days that were pushed before inside the window but are
        missing from the answer now: their values went down to nothing.
        """
        held = self.held_between(start_ms, end_ms)
        if fresh is not None and fresh[1] == held:
            self._record(fresh[0])
            return []
        if not held:
            self._record(samples)
            return []
        pushed = self._pushed
        landed: set[tuple[int, int]] = set()
        self._record(samples, landed)
        gone: list[Revision] = []
        for series, points in pushed.items():
            for ts_ms, old in list(points.items(start_ms, end_ms)):
                if (id(points), ts_ms) not in landed:
                    gone.append(Revision(*series, ts_ms, old, None))
                    del points[ts_ms]
                    self._count(ts_ms, -1)
        if gone:
            self._drop_empty()
        return gone

    def _record(
        self, samples: Iterable[Sample], landed: set[tuple[int, int]] | None = None
    ) -> None:
        """Set each sample's value; add `(id(points), ts_ms)` to `landed` if given."""
        pushed, counts = self._pushed, self._counts
        for sample in samples:
            key = (sample.name, sample.labels)
            points = pushed.get(key)
            if points is None:
                points = pushed[key] = Points(self._step)
            ts_ms = sample.ts_ms
            if ts_ms not in points:
                counts[ts_ms] = counts.get(ts_ms, 0) + 1
            points[ts_ms] = sample.value
            if landed is not None:
                landed.add((id(points), ts_ms))

    def totals_between(self, start_ms: int, end_ms: int) -> tuple[int, float]:
        """Return how many values of `[start_ms, end_ms)` the ledger holds, and their
        exactly rounded sum."""
        values = [
            value
            for points in self._pushed.values()
            for _, value in points.items(start_ms, end_ms)
        ]
        return len(values), math.fsum(values)

    def reconcile(
        self,
        held: Callable[[str, Labels], Mapping[int, float] | None],
        start_ms: int,
        end_ms: int,
        rel_tolerance: float = 1e-9,
    ) -> list[int]:
        """Forget the values of `[start_ms, end_ms)` that the store does not hold.

        `held(name, labels)` returns what the store holds for a series (timestamp to
        value), or None. A value is held when the store has it, or a larger one (a
        downward revision: deduplication keeps the larger, and pushing again cannot
        change that). Forgotten values count as new, so the next `changed` yields
        them and they are pushed again. Returns their timestamps (one per value).
        """
        lost: list[int] = []
        for (name, labels), points in self._pushed.items():
            stored: Mapping[int, float] | None = None
            looked = False
            for ts_ms, value in list(points.items(start_ms, end_ms)):
                if not looked:
                    stored, looked = held(name, labels), True
                have = None if stored is None else stored.get(ts_ms)
                if have is None or have < value - rel_tolerance * abs(value):
                    del points[ts_ms]
                    self._count(ts_ms, -1)
                    lost.append(ts_ms)
        self._drop_empty()
        return lost

    def forget_between(self, start_ms: int, end_ms: int) -> int:
        """Forget every value of `[start_ms, end_ms)`; return how many."""
        gone = 0
        for points in self._pushed.values():
            for ts_ms, _ in list(points.items(start_ms, end_ms)):
                del points[ts_ms]
                self._count(ts_ms, -1)
                gone += 1
        self._drop_empty()
        return gone

    def forget_before(self, ts_ms: int) -> None:
        """Drop points older than `ts_ms`: they will never be fetched again."""
        for points in self._pushed.values():
            points.drop_before(ts_ms)
        self._counts = {ts: n for ts, n in self._counts.items() if ts >= ts_ms}
        self._drop_empty()

    def _drop_empty(self) -> None:
        for series in [s for s, points in self._pushed.items() if not points]:
            del self._pushed[series]
