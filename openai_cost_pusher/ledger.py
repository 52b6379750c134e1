"""Remember what was pushed, so a cycle pushes only new or changed daily values.

Pure state owned by one pusher instance (no module-level state). The ledger maps each
series to the values that last landed, by timestamp. It also spots downward revisions:
VictoriaMetrics' deduplication keeps the largest value at a timestamp, so a value
revised downwards cannot replace the stored one and must be reported instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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

    def __len__(self) -> int:
        return sum(len(points) for points in self._pushed.values())

    def changed(
        self, samples: Iterable[Sample], revisions: list[Revision]
    ) -> Iterator[Sample]:
        """Yield the samples that are new or whose value changed.

        Each value lower than the one pushed before is also appended to `revisions`.
        """
        for sample in samples:
            points = self._pushed.get((sample.name, sample.labels))
            old = None if points is None else points.get(sample.ts_ms)
            if old is None or old != sample.value:
                if old is not None and sample.value < old:
                    revisions.append(
                        Revision(
                            sample.name, sample.labels, sample.ts_ms, old, sample.value
                        )
                    )
                yield sample

    def commit(
        self, samples: Iterable[Sample], start_ms: int, end_ms: int
    ) -> list[Revision]:
        """Record that `samples`, the whole answer for `[start_ms, end_ms)`, landed.

        Returns the series and days that were pushed before inside the window but are
        missing from the answer now: their values went down to nothing.
        """
        fresh: dict[Series, Points] = {}
        for sample in samples:
            points = fresh.get((sample.name, sample.labels))
            if points is None:
                points = fresh[(sample.name, sample.labels)] = Points(self._step)
            points[sample.ts_ms] = sample.value
        gone: list[Revision] = []
        for series, points in self._pushed.items():
            now_points = fresh.get(series)
            for ts_ms, old in [p for p in points.items() if start_ms <= p[0] < end_ms]:
                if now_points is None or ts_ms not in now_points:
                    gone.append(Revision(*series, ts_ms, old, None))
                del points[ts_ms]
        for series, new_points in fresh.items():
            kept = self._pushed.get(series)
            if kept is None:
                self._pushed[series] = new_points
            else:
                for ts_ms, value in new_points.items():
                    kept[ts_ms] = value
        self._drop_empty()
        return gone

    def forget_before(self, ts_ms: int) -> None:
        """Drop points older than `ts_ms`: they will never be fetched again."""
        for points in self._pushed.values():
            points.drop_before(ts_ms)
        self._drop_empty()

    def _drop_empty(self) -> None:
        for series in [s for s, points in self._pushed.items() if not points]:
            del self._pushed[series]
