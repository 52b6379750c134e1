"""What the cycle's tables keep from cycle to cycle: series numbers, labels, batches.

Each cycle adds a data set's values to tables packed by timestamp (`model.Columns`).
Their series keep their numbers from cycle to cycle, so that a day's values sit where
they sat and its digest can be compared with that of its last landing; the labels of
the daily metrics' series are built once a cycle, by a cache that goes with the
cycle's data set (the ledgers find those series by their keys, and need none kept),
under a generation that changes only when the names they come from change; and what
the results batches of the lookback added is kept for the next cycle (`batches`).
`SeriesTables` holds all of it for one pusher, and renews an index (with a new
generation) once it holds more than twice the series the ledger holds plus
`SERIES_SLACK`: series that came and went.

Pure state: no I/O, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from openai_cost_pusher.batches import (
    COST_KEY,
    CostBatches,
    CostKeyOf,
    UsageBatches,
    add_cost_parts,
)
from openai_cost_pusher.feed import DayFeed
from openai_cost_pusher.metrics import (
    CostColumns,
    CostKey,
    UsageSeriesCache,
)
from openai_cost_pusher.model import (
    CostParts,
    GroupedIndex,
    Labels,
    SeriesIndex,
    shared_number,
)

Renumber = Callable[[str | None, Callable[[int], int]], None]
"""How a ledger keyed by series numbers follows them to a renewed index: those of
one metric, or of every metric the index numbers (None: the usage index)
(`ledger.Ledger.renumber`)."""

K = TypeVar("K", bound=tuple[Hashable, ...])


def _usage_index() -> GroupedIndex[tuple[str, Labels]]:
    """The usage series' numbers, grouped by metric name."""
    return GroupedIndex(pairs=True)


SERIES_SLACK = 10_000
"""Series numbers an index may hold beyond twice the ledger's series."""
USAGE_LINES_KEPT = 1 << 14
"""Usage lines (endpoint, dimensions and fields) whose series a cycle keeps for the
next: about 240 bytes each (their key and the counters' numbers in the table's
index, which holds the labels anyway), so that 16,384 hold about 4 MiB, the series of a
1,000-project organization with ten models. A larger organization's other lines
build their labels every cycle."""
USAGE_VALUES_KEPT = 1 << 20
"""Usage values whose results batches a cycle keeps for the next (`UsageState`):
12 bytes each with its series number (4 bytes), so 12 MiB at most, about the
lookback of a 1,000-project organization at `1h`. A larger organization's other
batches are parsed every cycle."""
COST_VALUES_KEPT = 1 << 19
"""Costs and quantities whose results batches a cycle keeps for the next, per
costs data set (`KeptCosts`): 12 bytes each, so 6 MiB at most, the lookback of
some 4,000 projects with 20 line items (a larger organization's other batches are
parsed every cycle: its steady cycle costs more CPU, its peak 6 MiB less)."""


@dataclass(slots=True)
class SeriesState:
    """What a daily metric's series keep from cycle to cycle.

    `index` numbers the series of its table (`Columns`), grouped by project (a
    `GroupedIndex`), so that a day's values sit at the same numbers cycle after
    cycle and a day's digest can be compared with that of its last landing. Their
    labels are not kept: each cycle builds those of
    the days it builds, once (a cache of the cycle's data set), where a large
    organization's
    labels kept from cycle to cycle held about 90 bytes a series. `generation`
    changes whenever the index is renewed or the names the labels come from
    (`built_from`) change, so that a day's digest changes with its labels.
    """

    generation: int
    index: GroupedIndex[CostKey] = field(default_factory=GroupedIndex)
    built_from: tuple[object, ...] | None = None


@dataclass(slots=True)
class UsageState:
    """What the usage series keep from cycle to cycle (see `SeriesState`).

    `index` numbers the series of the usage table, grouped by metric name: a
    `GroupedIndex` keyed by each metric's labels, with no `(name, labels)` tuple
    of its own a series (56 bytes); `series` is the last cycle's
    cache of each counter's number there (`add_usage_lines`), valid while the names
    it was built from (`built_from`) stay the same, and the index with it: a steady
    cycle builds no usage labels, and hashes none. Where the source hands on the
    digests of results batches, `batches` keeps what each batch of the lookback
    added, so that a batch sent again byte for byte is neither parsed nor looked up.
    """

    generation: int
    index: GroupedIndex[tuple[str, Labels]] = field(default_factory=_usage_index)
    series: UsageSeriesCache = field(default_factory=dict)
    built_from: Mapping[str, str | None] | None = None
    batches: dict[str, UsageBatches] = field(default_factory=dict)
    """Per endpoint, what each results batch of the lookback added, by the digest
    of its bytes (`add_usage_parts`): numbers of `index`, so dropped with `series`."""

    def keep(self, series: UsageSeriesCache, batches: dict[str, UsageBatches]) -> None:
        """Keep what this cycle's usage saw for the next: its batches of the
        lookback, and the series of at most `USAGE_LINES_KEPT` of its lines."""
        self.batches = batches
        self.series = (
            series
            if len(series) <= USAGE_LINES_KEPT
            else dict(itertools.islice(series.items(), USAGE_LINES_KEPT))
        )


@dataclass(frozen=True, slots=True)
class KeptCosts:
    """What a costs data set's results batches of the lookback added
    (`batches.add_cost_parts`), valid for the very indexes whose numbers they hold:
    a renewed index (`SeriesTables.index`) leaves them behind."""

    indexes: tuple[SeriesIndex[CostKey], ...]
    batches: CostBatches

    def valid_for(self, *indexes: SeriesIndex[CostKey]) -> CostBatches:
        """Return the batches if they were numbered in `indexes`, else none."""
        same = len(indexes) == len(self.indexes) and all(
            a is b for a, b in zip(indexes, self.indexes, strict=True)
        )
        return self.batches if same else {}


def _renumbered(old: GroupedIndex[K], new: GroupedIndex[K]) -> Callable[[int], int]:
    """Return the number in `new` of each series numbered in `old`, numbering it
    there as it is asked for (the series a ledger holds: first, in its order)."""

    def number_of(number: int) -> int:
        key = old.key_of(number)
        renewed = new.get(key)
        if renewed is None:
            renewed = new[key] = shared_number(len(new))
        return renewed

    return number_of


class SeriesTables:
    """The series state of one pusher's tables, kept from cycle to cycle."""

    def __init__(self) -> None:
        self.series: dict[str, SeriesState] = {}  # by daily metric
        self.usage: UsageState | None = None
        self.kept_costs: dict[str, KeptCosts] = {}  # by costs data set
        self._generations = 0

    def _generation(self) -> int:
        self._generations += 1
        return self._generations

    def index(
        self, metric: str, held: int, renumber: Renumber | None = None
    ) -> GroupedIndex[CostKey]:
        """Return the numbers of `metric`'s series for this cycle's table: those of
        earlier cycles, so that a day's values sit where they sat, unless the index
        holds more than twice the `held` series of the ledger (series that came and
        went) plus `SERIES_SLACK`: then a new one, with new labels. A renewed index
        numbers first the series a ledger keyed by their numbers holds, which
        `renumber(metric, number_of)` moves to their new numbers."""
        state = self.series.get(metric)
        if state is None or len(state.index) > 2 * held + SERIES_SLACK:
            old = None if state is None else state.index
            state = self.series[metric] = SeriesState(self._generation())
            if old is not None and renumber is not None:
                renumber(metric, _renumbered(old, state.index))
        return state.index

    def key_of(self, metric: str, number: int) -> CostKey:
        """Return the key of `metric`'s series numbered `number` in its index."""
        return self.series[metric].index.key_of(number)

    def usage_labels(self, number: int) -> Labels:
        """Return the labels of the usage series numbered `number`."""
        assert self.usage is not None
        return self.usage.index.key_of(number)[1]

    def generation(self, metric: str, *built_from: object) -> int:
        """Return the generation of `metric`'s series (whose index `index` returned)
        labelled from `built_from` (names): that of earlier cycles while `built_from`
        is equal to theirs, else a new one. The labels themselves are the caller's
        to build and let go with the cycle's data set."""
        state = self.series[metric]
        if state.built_from != built_from:
            state.built_from = tuple(
                dict(b) if isinstance(b, Mapping) else b for b in built_from
            )
            state.generation = self._generation()
        return state.generation

    def usage_state(
        self,
        held: int,
        names: Mapping[str, str | None],
        renumber: Renumber | None = None,
    ) -> UsageState:
        """Return what the usage series keep from cycle to cycle: their numbers,
        renewed (with a new generation) as `index` renews a metric's, `renumber`
        following them; and the series each counter went to, with the batches
        kept, dropped when the names they were built from change."""
        state = self.usage
        if state is None or len(state.index) > 2 * held + SERIES_SLACK:
            old = None if state is None else state.index
            state = self.usage = UsageState(self._generation())
            if old is not None and renumber is not None:
                renumber(None, _renumbered(old, state.index))
        if state.built_from != names:
            state.built_from = dict(names)
            state.series, state.batches = {}, {}
        return state

    def cost_feed(
        self,
        dataset: str,
        parts: Callable[[Container[bytes]], Iterable[CostParts]],
        table: CostColumns,
        quantities: CostColumns | None,
        keep_from: int,
        key: CostKeyOf = COST_KEY,
    ) -> DayFeed[CostParts]:
        """Return a feed of the costs `parts` fetches, given the digests of the
        batches `dataset` kept last cycle, which adds each bucket to `table` and
        `quantities` as it is taken (`batches.add_cost_parts`) and, once drained,
        keeps this cycle's batches from `keep_from` on (the next lookback),
        numbered in these tables' indexes. A feed left undrained (a failed fetch)
        keeps last cycle's."""
        indexes = (
            (table.index,) if quantities is None else (table.index, quantities.index)
        )
        kept = self.kept_costs.get(dataset)
        known = {} if kept is None else kept.valid_for(*indexes)
        if kept is not None and not known:
            # numbered in a renewed index: let it go before the fetch, not after
            del self.kept_costs[dataset], kept
        keep: CostBatches = {}
        left = [COST_VALUES_KEPT]

        def add(_: int, bucket: CostParts) -> None:
            left[0] -= add_cost_parts(
                (bucket,), table, quantities, known, keep, keep_from, left[0], key
            )

        def done() -> None:
            self.kept_costs[dataset] = KeptCosts(indexes, keep)

        return DayFeed([iter(parts(known))], add, done)
