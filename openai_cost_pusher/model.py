"""Frozen records passed between layers: projects, cost lines and samples.

This module owns the shapes only. Parsing lives in `openai_api`, turning records into
samples in `metrics`, and rendering in `exposition`. Times are integers: Unix seconds
for API records, milliseconds for samples, never float seconds times 1000.
"""

from __future__ import annotations

import hashlib
import math
import threading
from array import array
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Generic, NamedTuple, Protocol, TypeVar

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name: hashable, so a series can be a dict key."""


@dataclass(frozen=True, slots=True)
class Project:
    """One OpenAI project as the project list returns it."""

    id: str
    name: str | None
    archived: bool = False


class CostLine(NamedTuple):
    """One cost result: a day's amount for one project, line item and currency.

    `day` is the bucket's start in Unix seconds (00:00 UTC). `project_id`,
    `line_item`, `quantity_unit` and `api_key_id` are `""` where the API reports null
    (or leaves the key out); `quantity` is None there. A named tuple, not a frozen
    dataclass: a large organization's day holds tens of thousands of results, and
    the parser builds a tuple (`tuple.__new__`) in a fraction of the instructions a
    frozen dataclass takes to set its fields one by one (cachegrind: 8 fields, 35 %
    fewer instructions per result than the 5-field dataclass this was).
    """

    day: int
    project_id: str
    line_item: str
    currency: str
    value: float
    quantity: float | None = None
    quantity_unit: str = ""
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One project API key as the project's key list returns it (never its value)."""

    id: str
    name: str


class UsageLine(NamedTuple):
    """One usage result: a bucket's amounts for one combination of dimensions.

    `start` is the bucket's start in Unix seconds. `dims` holds every dimension the
    endpoint has (`project_id`, `model`, `batch`, ...) as strings, `""` where the API
    gave null. `fields` names each numeric field present (`input_tokens`, ...) and
    `values` holds their amounts in the same order: a large organization's page has
    hundreds of thousands of lines, and the parser shares `dims` and `fields` tuples
    between them, so a line costs little more than its numbers. A named tuple, like
    `CostLine`: built in a third of the time a frozen dataclass takes.
    """

    start: int
    operation: str
    dims: Labels
    fields: tuple[str, ...]
    values: tuple[float, ...]

    @property
    def counters(self) -> Iterator[tuple[str, float]]:
        """Yield `(field, value)` pairs."""
        return zip(self.fields, self.values, strict=True)


R = TypeVar("R", CostLine, UsageLine)


class BucketParts(NamedTuple, Generic[R]):
    """A bucket handed on with the digests of its results batches (see
    `AdminApi.fetch_usage_parts`): `batches` holds each batch's digest in order,
    with how many of `lines` it gave, or a negative count (`parsers.NOT_PARSED`)
    for a batch not parsed, whose lines the caller had from the same bytes."""

    start: int
    lines: list[R]
    batches: tuple[tuple[bytes, int], ...]


UsageParts = BucketParts[UsageLine]
"""A usage bucket with its batches' digests (`AdminApi.fetch_usage_parts`)."""
CostParts = BucketParts[CostLine]
"""A costs bucket with its batches' digests (`AdminApi.fetch_cost_parts`)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A bucket withheld whole because one of its results is malformed.

    `start` is the bucket's start in Unix seconds (00:00 UTC for costs), `endpoint`
    the API path (`/organization/costs`, `/organization/usage/completions`), `path`
    the JSON path of the bad value in its page (`data[3].results[17].amount.value`)
    and `reason` what is wrong with it.
    """

    start: int
    endpoint: str
    path: str
    reason: str


class Sample(NamedTuple):
    """One sample to push: metric name, sorted labels, value and timestamp in ms.

    A named tuple, as `CostLine` is: a backfill builds millions of samples, and a
    tuple is built in a third of the time a frozen dataclass takes.
    """

    name: str
    labels: Labels
    value: float
    ts_ms: int


def labels_of(pairs: dict[str, str]) -> Labels:
    """Return `pairs` as sorted, hashable label pairs."""
    return tuple(sorted(pairs.items()))


_ABSENT = math.nan


class Points:
    """Values at evenly spaced integer timestamps, packed in one float array.

    A series of daily (or hourly) values kept as a `dict` costs about 3 KB per 31
    points; an `array('d')` with NaN for the gaps costs about 300 bytes. Large
    organizations hold tens of thousands of such series at once. NaN marks a missing
    point, so NaN itself cannot be stored (API values are always finite).
    """

    __slots__ = ("_base", "_step", "_values")

    def __init__(self, step: int) -> None:
        self._step = step
        self._base = 0
        self._values = array("d")

    def _index(self, ts: int) -> int:
        offset, rest = divmod(ts - self._base, self._step)
        if rest:
            msg = f"timestamp {ts} is not on the {self._step} grid of {self._base}"
            raise ValueError(msg)
        return offset

    def __setitem__(self, ts: int, value: float) -> None:
        if not self._values:
            self._base = ts
            self._values.append(value)
            return
        idx = self._index(ts)
        if idx < 0:
            self._values[0:0] = array("d", [_ABSENT]) * -idx
            self._base = ts
            idx = 0
        elif idx >= len(self._values):
            self._values.extend(array("d", [_ABSENT]) * (idx - len(self._values) + 1))
        self._values[idx] = value

    def get(self, ts: int) -> float | None:
        """Return the value at `ts`, or None."""
        if not self._values:
            return None
        idx = self._index(ts)
        if not 0 <= idx < len(self._values):
            return None
        value = self._values[idx]
        return None if math.isnan(value) else value

    def add(self, ts: int, value: float) -> None:
        """Add `value` to the point at `ts`, creating it if absent (one IEEE addition,
        exactly rounded as `math.fsum` of the two would be)."""
        values = self._values
        if values:  # the usual case, inline: a point inside or just after the array
            offset, rest = divmod(ts - self._base, self._step)
            if not rest and 0 <= offset <= len(values):
                if offset == len(values):
                    values.append(value)
                else:
                    old = values[offset]
                    values[offset] = value if old != old else old + value
                return
        old_value = self.get(ts)
        self[ts] = value if old_value is None else old_value + value

    def __delitem__(self, ts: int) -> None:
        if self.get(ts) is not None:
            self._values[self._index(ts)] = _ABSENT

    def __contains__(self, ts: object) -> bool:
        return isinstance(ts, int) and self.get(ts) is not None

    def items(
        self, start: int | None = None, end: int | None = None
    ) -> Iterator[tuple[int, float]]:
        """Yield `(timestamp, value)` for every present point, in time order; only
        those in `[start, end)` where given."""
        base, step, values = self._base, self._step, self._values
        first = 0 if start is None else max(0, -(-(start - base) // step))
        last = (
            len(values) if end is None else min(len(values), -(-(end - base) // step))
        )
        for idx in range(first, last):
            value = values[idx]
            if not math.isnan(value):
                yield base + idx * step, value

    def __len__(self) -> int:
        return sum(1 for v in self._values if not math.isnan(v))

    def __bool__(self) -> bool:
        return any(not math.isnan(v) for v in self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Points):
            return dict(self.items()) == dict(other.items())
        if isinstance(other, dict):
            return dict(self.items()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Points({dict(self.items())!r})"

    def drop_before(self, ts: int) -> None:
        """Forget every point before `ts`."""
        if not self._values:
            return
        cut = -(-(ts - self._base) // self._step)  # ceiling division
        if cut > 0:
            del self._values[:cut]
            self._base += cut * self._step


K = TypeVar("K", bound=Hashable)

_NUMBERS: list[int] = []  # _NUMBERS[n] is n, one object for every holder
_NUMBERS_GROW = threading.Lock()


def shared_number(n: int) -> int:
    """Return the int `n` as one object shared by whoever numbers series this way
    (the tables' indexes, the ledgers), as CPython shares the ints up to 256.

    Each index entry of a series holds its number, and each number past 256 is an
    object of its own (32 bytes): a large organization's tables and ledgers held
    about 1.5 million of them at 10,000 projects, where this holds one per number,
    as many as the largest index has series. The pool only grows (8 bytes a
    number), under a lock, so that an entry is always its own index.
    """
    numbers = _NUMBERS
    if n < len(numbers):
        return numbers[n]
    with _NUMBERS_GROW:
        if n >= len(numbers):
            numbers.extend(range(len(numbers), n + 1))
    return numbers[n]


def _put(column: array[float], number: int, value: float) -> None:
    """Add `value` to the value at `number` of `column` (NaN: none yet), filling the
    column with NaN up to it where it is shorter."""
    size = len(column)
    if number < size:
        old = column[number]
        column[number] = value if old != old else old + value
        return
    if number > size:
        column.extend(array("d", [_ABSENT]) * (number - size))
    column.append(value)


class SeriesIndex(Protocol[K]):
    """What a `Columns` table needs of its index: a dict of each key's number, or
    a `GroupedIndex` standing for one."""

    def get(self, key: K, /) -> int | None: ...

    def __getitem__(self, key: K, /) -> int: ...

    def __setitem__(self, key: K, number: int, /) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[K]: ...

    def items(self) -> Iterable[tuple[K, int]]: ...


T = TypeVar("T", bound=tuple[Hashable, ...])


class GroupedIndex(Generic[T]):
    """Series numbers of tuple keys grouped by their first element (a project id):
    one small dict per group, keyed by the rest of the key (shared by every group
    that has it), instead of one dict keyed by whole tuples.

    A daily metric's series are a project's line items (or units, or API keys):
    10,000 projects with 20 line items each held about 130 bytes a series in a dict
    keyed by `(project, line item, currency)` (the entry and the key's tuple), some
    60 here, for the costs and their quantities alike. The usage series, keyed by
    `(metric name, labels)`, are grouped by name (`pairs`): each series' labels are
    its key in its metric's dict, with no pair tuple of its own (56 bytes).

    The same methods as the dict it stands for (`get`, item assignment, `len`,
    iteration, `items`), with two differences: the keys are built as they are asked
    for (equal to the ones given, not the same tuples; a pair's second element is
    the very object given), and they come group by group, each group's in the order
    they were numbered, so not in number order where a group gained a series after
    another group was numbered (`key_of` goes by number).
    """

    __slots__ = ("_by_number", "_groups", "_pairs", "_rests", "_size")

    def __init__(self, *, pairs: bool = False) -> None:
        """`pairs`: the keys are pairs whose second element is the rest itself
        (a usage series' labels, under its metric name), kept as it is given."""
        self._groups: dict[Hashable, dict[Hashable, int]] = {}
        self._pairs = pairs
        # each key's rest once, whichever groups hold it
        self._rests: dict[Hashable, Hashable] = {}
        self._size = 0
        # the keys by number, as far as `key_of` needed them
        self._by_number: list[T] = []

    def get(self, key: T, /) -> int | None:
        """Return the number of `key`, or None."""
        group = self._groups.get(key[0])
        if group is None:
            return None
        return group.get(key[1] if self._pairs else key[1:])

    def __getitem__(self, key: T, /) -> int:
        number = self.get(key)
        if number is None:
            raise KeyError(key)
        return number

    def __setitem__(self, key: T, number: int, /) -> None:
        group = self._groups.get(key[0])
        if group is None:
            group = self._groups[key[0]] = {}
        rest: Hashable
        if self._pairs:
            rest = key[1]
        else:
            rest = key[1:]
            rest = self._rests.setdefault(rest, rest)
        if rest not in group:
            self._size += 1
        group[rest] = number

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        for key, _ in self.items():  # noqa: PERF102  # keys are built
            yield key

    def items(self) -> Iterator[tuple[T, int]]:
        """Yield `(key, number)` group by group (see the class)."""
        for first, group in self._groups.items():
            if self._pairs:
                for rest, number in group.items():
                    yield (first, rest), number  # type: ignore[misc]
                continue
            head = (first,)
            for rest, number in group.items():
                yield head + rest, number  # type: ignore[operator]

    def key_of(self, number: int) -> T:
        """Return the key numbered `number`. The keys are put in number order once
        and kept, taken again only for a number numbered since (a key is never
        removed): for the revisions reported gone, the read-back and renumbering,
        not for every sample."""
        if number >= len(self._by_number):
            self._by_number = [k for k, _ in sorted(self.items(), key=itemgetter(1))]
        return self._by_number[number]


class Columns(Generic[K]):
    """Values of many series at shared timestamps, packed by timestamp: one float
    array per timestamp, indexed by the number each series gets when first added
    (NaN: no value).

    A cycle's table of a large organization: 120,000 series over 31 days cost some
    500 bytes per series as one `Points` each, about 130 here (its index entry, and
    8 bytes a day), and a day pushed can be let go whole (`drop`), so that the table
    shrinks as the ledger grows. NaN cannot be stored (API values are finite).
    """

    __slots__ = ("_columns", "_index")

    def __init__(self, index: SeriesIndex[K] | None = None) -> None:
        # key -> number (a dict: insertion order being number order); an index
        # kept from an earlier table gives each series the same number again
        self._index: SeriesIndex[K] = {} if index is None else index
        self._columns: dict[int, array[float]] = {}

    def add(self, key: K, ts: int, value: float) -> None:
        """Add `value` to the value of `key` at `ts`, creating it if absent."""
        _put(self._column(ts), self.number(key), value)

    @property
    def index(self) -> SeriesIndex[K]:
        """The numbers of the series, kept from table to table by the caller."""
        return self._index

    def number(self, key: K) -> int:
        """Return the number of `key`, giving it the next one if it is new: a
        caller that keeps it adds by number (`add_numbered`), without hashing the
        key again, as long as it adds to tables over this very index."""
        number = self._index.get(key)
        if number is None:
            number = self._index[key] = shared_number(len(self._index))
        return number

    def add_numbered(
        self, numbers: Sequence[int], ts: int, values: Sequence[float]
    ) -> None:
        """Add each of `values` at `ts` to the series of the same place in `numbers`
        (from `number`; a negative number: no series, the value is skipped)."""
        column = self._column(ts)
        for number, value in zip(numbers, values, strict=True):
            if number >= 0:
                _put(column, number, value)

    def _column(self, ts: int) -> array[float]:
        column = self._columns.get(ts)
        if column is None:
            column = self._columns[ts] = array("d")
        return column

    def at(self, ts: int) -> Iterator[tuple[K, float]]:
        """Yield `(key, value)` of every series with a value at `ts`, in the order
        the series were first added."""
        for key, _, value in self.numbered_at(ts):
            yield key, value

    def numbered_at(self, ts: int) -> Iterator[tuple[K, int, float]]:
        """Yield `(key, number, value)` of every series with a value at `ts`, in
        the order the series were first added."""
        column = self._columns.get(ts)
        if column is None:
            return
        size = len(column)
        ascending = isinstance(self._index, dict)  # see `GroupedIndex`
        for key, number in self._index.items():
            if number >= size:
                if ascending:
                    return  # numbers ascend with a dict's order
                continue
            value = column[number]
            if value == value:
                yield key, number, value

    def get(self, key: K, ts: int) -> float | None:
        """Return the value of `key` at `ts`, or None."""
        number = self._index.get(key)
        column = self._columns.get(ts)
        if number is None or column is None or number >= len(column):
            return None
        value = column[number]
        return None if value != value else value

    def digest(self, ts: int) -> bytes:
        """Return a digest of the values at `ts` by series number (BLAKE2b, 32
        bytes): two tables over the same index with equal digests hold equal values
        for equal series there."""
        column = self._columns.get(ts)
        return hashlib.blake2b(
            b"" if column is None else column.tobytes(), digest_size=32
        ).digest()

    def timestamps(self) -> list[int]:
        """Return the timestamps that hold values, oldest first."""
        return sorted(self._columns)

    def drop(self, ts: int) -> None:
        """Let go of every value at `ts`."""
        self._columns.pop(ts, None)

    def __iter__(self) -> Iterator[K]:
        return iter(self._index)

    def __len__(self) -> int:
        """How many series were added."""
        return len(self._index)
