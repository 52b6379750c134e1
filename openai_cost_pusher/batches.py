"""Results batches sent again: what each added to a cycle's table, kept for the next.

A steady cycle fetches its lookback again, and the API sends most of it again byte
for byte. The client digests each results batch's bytes as it decodes them, and
leaves unparsed a batch whose digest the caller knows (`AdminApi.fetch_cost_parts`,
`AdminApi.fetch_usage_parts`); the functions here add such a batch as the same
bytes added it last cycle, from the series numbers and values kept for it, and keep
what this cycle's batches of the next lookback add.

The series numbers are those of the tables' indexes (`model.Columns`): what is kept
holds while the caller keeps the same index objects, and goes with them. Pure: no
I/O, no clock.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any, TypeVar

from openai_cost_pusher.metrics import CostColumns, CostKey, UsageColumns, UsageNumbers
from openai_cost_pusher.model import (
    BucketParts,
    CostLine,
    CostParts,
    UsageLine,
    UsageParts,
)

UsageBatch = tuple["array[int]", "array[float]"]
"""What the lines of one results batch added: series numbers (`NO_SERIES` where
none; 4-byte integers, `array("i")`: an index renewed past twice the series held
stays far below 2^31), and the values added to them, in the same order: 12 bytes
a value."""
UsageBatches = dict[bytes, UsageBatch]
"""One endpoint's results batches by the digest of their bytes."""

CostBatch = tuple["array[int]", "array[float]", "array[int]", "array[float]"]
"""What the lines of one costs results batch added: series numbers and values in
the costs table, then in the quantities table (none without one), each in the
lines' order."""
CostBatches = dict[bytes, CostBatch]
"""One costs query's results batches by the digest of their bytes."""

CostKeyOf = Callable[[CostLine], CostKey]
"""Where a `CostLine` goes in a table: its series there."""

COST_KEY: CostKeyOf = itemgetter(1, 2, 3)
"""A `CostLine`'s series in the costs table: project id, line item, currency."""
KEY_COST_KEY: CostKeyOf = itemgetter(1, 7, 3)
"""A `CostLine`'s series in the per-key costs table: project id, API key id,
currency."""
QUANTITY_KEY: CostKeyOf = itemgetter(1, 2, 6)
"""A `CostLine`'s series in the quantities table: project id, line item, unit."""


def add_usage_parts(
    table: UsageColumns,
    buckets: Iterable[UsageParts],
    numbers_of: UsageNumbers,
    kept: Mapping[bytes, UsageBatch],
    keep: UsageBatches,
    keep_from: int,
    budget: int,
) -> int:
    """Add one endpoint's buckets to `table` as `metrics.add_usage_lines` adds
    lines, and each results batch not parsed (see `UsageParts`) as it was added
    before (`kept`, the last cycle's batches of the endpoint, which the fetch was
    given as known), batch after batch in the bucket's order, so that values summed
    on one series are summed in the order parsing them would. Each batch of a bucket
    from `keep_from` on (seconds: the next cycle's lookback) goes to `keep`, as long
    as the values kept stay within `budget`.
    Return how many values went to `keep`.

    A batch is kept by the digest of its bytes: the same bytes give the same lines,
    and, while the caller keeps `numbers_of`'s cache (the same names, the same
    index), the same series numbers.
    """
    add = table.add_numbered

    def numbered(lines: Iterable[UsageLine]) -> UsageBatch:
        numbers, values = array("i"), array("d")
        for line in lines:
            numbers.extend(numbers_of(line))
            values.extend(line.values)
        return numbers, values

    def add_batch(batch: UsageBatch, start: int) -> None:
        add(batch[0], start, batch[1])

    return _add_batches(
        buckets, kept, keep, keep_from, budget, numbered, add_batch, _usage_size
    )


def add_cost_parts(
    buckets: Iterable[CostParts],
    table: CostColumns,
    quantities: CostColumns | None,
    kept: Mapping[bytes, CostBatch],
    keep: CostBatches,
    keep_from: int,
    budget: int,
    key: CostKeyOf = COST_KEY,
) -> int:
    """Add costs buckets to `table` (each line's value on its `key` series) and,
    where given, to `quantities` (each line's quantity on its `QUANTITY_KEY`
    series; lines without one add none), as `add_usage_parts` adds usage: a batch
    not parsed adds what it added last cycle (`kept`), in the bucket's order; a
    batch of a day from `keep_from` on goes to `keep` while the values kept stay
    within `budget`. Return how many values went to `keep`.
    """
    add = table.add_numbered
    add_quantities = None if quantities is None else quantities.add_numbered

    def numbered(lines: Iterable[CostLine]) -> CostBatch:
        return _numbered(lines, table, quantities, key)

    def add_batch(batch: CostBatch, day: int) -> None:
        add(batch[0], day, batch[1])
        if add_quantities is not None:
            add_quantities(batch[2], day, batch[3])

    return _add_batches(
        buckets, kept, keep, keep_from, budget, numbered, add_batch, _cost_size
    )


B = TypeVar("B", UsageBatch, CostBatch)


def _add_batches(
    buckets: Iterable[BucketParts[Any]],
    kept: Mapping[bytes, B],
    keep: dict[bytes, B],
    keep_from: int,
    budget: int,
    numbered: Callable[[Iterator[Any]], B],
    add: Callable[[B, int], None],
    size: Callable[[B], int],
) -> int:
    """Add each bucket's batches in order, each as `numbered` numbers its lines
    (parsed) or as `kept` holds it (not parsed), at the bucket's start; keep the
    batches of buckets from `keep_from` on while their `size` stays within
    `budget`. Return the values kept."""
    held = 0
    for bucket in buckets:
        keeping = bucket.start >= keep_from
        lines = iter(bucket.lines)
        for digest, count in bucket.batches:
            if count < 0:  # not parsed: as the same bytes added it last cycle
                batch = kept[digest]
            else:
                batch = numbered(itertools.islice(lines, count))
            add(batch, bucket.start)
            n = size(batch)
            if keeping and held + n <= budget:
                keep[digest] = batch
                held += n
    return held


def _usage_size(batch: UsageBatch) -> int:
    return len(batch[1])


def _cost_size(batch: CostBatch) -> int:
    return len(batch[1]) + len(batch[3])


def _numbered(
    lines: Iterable[CostLine],
    table: CostColumns,
    quantities: CostColumns | None,
    key: CostKeyOf,
) -> CostBatch:
    """Return the series numbers and values `lines` add, in their order."""
    number = table.number
    numbers, values = array("i"), array("d")
    units, amounts = array("i"), array("d")
    if quantities is None:
        for line in lines:
            numbers.append(number(key(line)))
            values.append(line.value)
        return numbers, values, units, amounts
    unit_number = quantities.number
    for line in lines:
        numbers.append(number(key(line)))
        values.append(line.value)
        if line.quantity is not None:
            units.append(unit_number(QUANTITY_KEY(line)))
            amounts.append(line.quantity)
    return numbers, values, units, amounts
