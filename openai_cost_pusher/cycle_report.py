"""What one cycle did: a report per data set, and the cycle's report over them all.

For the log, `--once`, the health listener and tests. Pure records: the cycle
(`app`) builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openai_cost_pusher.model import Rejected
from openai_cost_pusher.push import PRINTED, STORED, UNANSWERED, PushStats
from openai_cost_pusher.window import Window


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """What one data set did in one cycle."""

    dataset: str
    ok: bool
    window: Window
    samples: int = 0
    stats: PushStats = field(default_factory=PushStats)
    error: str | None = None
    landed_days: int = 0
    """UTC days whose values the store acknowledged in this cycle."""
    rejected: tuple[Rejected, ...] = ()
    """Buckets the API answered with a malformed result: their days were withheld."""
    unlanded_from: int | None = None
    """The first bucket that did not land, when the data set failed part-way."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did, for the log, `--once`, the health listener and tests."""

    datasets: tuple[DatasetReport, ...]

    @property
    def ok(self) -> bool:
        """Return whether every data set landed."""
        return all(d.ok for d in self.datasets)

    @property
    def window(self) -> Window:
        """Return the costs window."""
        return self.datasets[0].window

    @property
    def samples(self) -> int:
        """Return the samples pushed over all data sets."""
        return sum(d.samples for d in self.datasets)

    @property
    def stats(self) -> PushStats:
        """Return the push figures summed over all data sets."""
        return PushStats(
            requests=sum(d.stats.requests for d in self.datasets),
            raw_bytes=sum(d.stats.raw_bytes for d in self.datasets),
            gzip_bytes=sum(d.stats.gzip_bytes for d in self.datasets),
            where=self.where,
        )

    @property
    def where(self) -> str:
        """Return where the cycle's data went: `stored` only if every data set that
        went anywhere was stored (see `PushStats.where`)."""
        places = {d.stats.where for d in self.datasets}
        for place in (UNANSWERED, PRINTED):
            if place in places:
                return place
        return STORED

    @property
    def stored(self) -> bool:
        """Return whether every data set landed in VictoriaMetrics."""
        return self.ok and self.where == STORED

    @property
    def rejected(self) -> tuple[Rejected, ...]:
        """Return the buckets withheld for a malformed result, over all data sets."""
        return tuple(r for d in self.datasets for r in d.rejected)

    @property
    def error(self) -> str | None:
        """Return the first failure's message, if any."""
        return next((d.error for d in self.datasets if d.error), None)

    def get(self, dataset: str) -> DatasetReport:
        """Return one data set's report."""
        return next(d for d in self.datasets if d.dataset == dataset)
