"""Remember what was pushed, so a cycle pushes only new or changed daily values.

Pure state owned by one pusher instance (no module-level state). The ledger maps each
series to the values that last landed, by timestamp. It also spots downward revisions:
VictoriaMetrics' deduplication keeps the largest value at a timestamp, so a value
revised downwards cannot replace the stored one and must be reported instead.

Values are kept by column: one `array('d')` per timestamp, indexed by a number each
series gets when it is first recorded (NaN: no value). A large organization's ledger
holds hundreds of thousands of series over a month of days; per series that is one
index entry and 8 bytes a day, where an array object per series cost some 200 bytes
more. A timestamp's values go in one step (`forget_before`, `forget_between`), and a
series that holds nothing any more gives its number to the next new series.

A timestamp no later cycle compares value by value (a day before the lookback) can be
reduced to how many values it held and their sum (`summarize`): what the read-back
compares. Its values still count as held, but cannot be compared one by one: `diff`
finds none of them, a commit of it replaces the summary with its samples (reporting
no value gone), and `reconcile` forgets it whole. A series a summary leaves with no
value keeps its number until `forget_before` (once a cycle): a backfill summarizes
each day before the lookback as it lands, and the next day's commit finds every
series where it was, instead of freeing and numbering them all again day after day.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import (
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    MutableSequence,
    Sequence,
)
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from openai_cost_pusher.model import Labels, Sample, shared_number

_ABSENT = math.nan
_LABELS = itemgetter(1)  # a `Sample`'s labels

LabelsOf = Callable[[str, Hashable], Labels]
"""The labels of a keyed ledger's series: its metric name and key to its labels, as
the samples of the series carry them now (see `Ledger`)."""


def _labels_are_keys(name: str, key: Hashable) -> Labels:
    """A ledger keyed by labels: each series' key is its labels."""
    del name
    return key  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Revision:
    """A daily value that went down: `new` is None where the series disappeared."""

    name: str
    labels: Labels
    ts_ms: int
    old: float
    new: float | None


class _NumberIndex:
    """A keyed ledger's series of one metric name by their keys when the keys are
    the series' numbers in the caller's table (`Ledger(numbered=True)`): 4 bytes a
    table number, where a dict's entry took about 50 bytes a series. The same
    methods as the dict it stands for (`get`, item assignment and deletion, `len`)."""

    __slots__ = ("_at", "_size")

    def __init__(self) -> None:
        self._at = array("i")  # table number -> the ledger's number + 1 (0: none)
        self._size = 0

    def get(self, key: int) -> int | None:
        at = self._at
        if key < len(at):
            number = at[key]
            if number:
                return number - 1
        return None

    def __setitem__(self, key: int, number: int) -> None:
        at = self._at
        if key >= len(at):
            at.extend(array("i", [0]) * (key + 1 - len(at)))
        if not at[key]:
            self._size += 1
        at[key] = number + 1

    def __delitem__(self, key: int) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._at[key] = 0
        self._size -= 1

    def __len__(self) -> int:
        return self._size


class Ledger:
    """The last value pushed for each series and timestamp, since start.

    A series is found by its metric name and its key: by default its labels, the
    very tuples the samples carry (kept by the caller's tables), with no `(name,
    labels)` tuple of its own. A ledger given `labels_of` is keyed instead by what
    the caller gives with each sample (`keys`: a table's key, which its index keeps
    anyway), so that no labels need outlive the cycle that built them: it keeps a
    hash of each series' labels (8 bytes), and a series whose labels changed under
    the same key (a renamed project) is a new series, whose earlier values are
    forgotten (they were pushed under the old labels) and pushed again.
    `labels_of(name, key)` gives a series' labels as they are now, for the
    revisions it reports gone and the read-back (`reconcile`).

    A keyed ledger made `numbered` takes as keys the series' numbers in the
    caller's table (`model.Columns`, one numbering per metric name), and finds its
    own number for each in an array instead of a dict. Where the caller renumbers
    its table, `renumber` moves the ledger's keys with it.
    """

    def __init__(
        self, labels_of: LabelsOf | None = None, *, numbered: bool = False
    ) -> None:
        if numbered and labels_of is None:
            raise ValueError("a numbered ledger is keyed: it needs labels_of")
        self._numbered = numbered
        # metric name -> key -> the series' number
        self._index: dict[str, dict[Hashable, int] | _NumberIndex] = {}
        self._names: list[str | None] = []  # number -> metric name (None: free)
        # number -> key (() when free); a numbered ledger's table numbers packed
        # (-1 when free): 4 bytes a series instead of 8
        self._keys: MutableSequence[Any] = array("i") if numbered else []
        self._keyed = labels_of is not None
        self._labels_of: LabelsOf = labels_of or _labels_are_keys
        # keyed: number -> hash of the labels its values were pushed under
        self._hashes = array("q")
        self._free: list[int] = []  # numbers of series that hold nothing
        self._held = array("i")  # number -> how many values the series holds
        # how many indexed series hold nothing, left so by a summary (see
        # `summarize`) until a commit gives them a value or a sweep frees them
        self._idles = 0
        self._columns: dict[int, array[float]] = {}  # ts_ms -> values by number
        # how many values each timestamp holds: a commit that saw every value its
        # range held (or a range holding none, as in a backfill) has no value that
        # could have gone, and need not scan every series for one
        self._counts: dict[int, int] = {}
        # timestamps reduced to how many values they held and their exactly rounded
        # sum (`summarize`): all a read-back compares, 16 bytes instead of 8 a series
        self._totals: dict[int, tuple[int, float]] = {}
        self._removals = 0

    @property
    def numbered(self) -> bool:
        """Whether the keys are the series' numbers in the caller's table."""
        return self._numbered

    @property
    def keyed(self) -> bool:
        """Whether series are found by the keys given with the samples (`labels_of`
        given), rather than by their labels."""
        return self._keyed

    def renumber(self, name: str | None, number_of: Callable[[int], int]) -> None:
        """Move the keys of `name`'s series (None: every name's, numbered in one
        table) to the numbers `number_of` gives for them, in the order of the
        ledger's own: the caller's table was renumbered. Values, held counts and
        label hashes stay as they are."""
        if not self._numbered:
            raise ValueError("only a numbered ledger's keys are table numbers")
        moved: dict[str, _NumberIndex] = {}
        keys = self._keys
        for number, held_name in enumerate(self._names):
            if held_name is not None and name in (None, held_name):
                key = number_of(keys[number])
                keys[number] = key
                by_name = moved.get(held_name)
                if by_name is None:
                    by_name = moved[held_name] = _NumberIndex()
                by_name[key] = number
        for moved_name in [n for n in self._index if name in (None, n)]:
            del self._index[moved_name]
        self._index.update(moved)

    @property
    def removals(self) -> int:
        """How many times values were forgotten since start (by any means): a day
        recorded when this was `n` still holds what was recorded while it is `n`,
        since values are added by `commit` only, a day's by its own commit."""
        return self._removals

    def __len__(self) -> int:
        return sum(self._counts.values()) + sum(n for n, _ in self._totals.values())

    @property
    def series(self) -> int:
        """How many series hold at least one value."""
        return sum(map(len, self._index.values())) - self._idles

    def held_between(self, start_ms: int, end_ms: int) -> int:
        """Return how many values of `[start_ms, end_ms)` the ledger holds, those
        of summarized timestamps included."""
        return sum(
            n for ts, n in self._counts.items() if start_ms <= ts < end_ms
        ) + sum(n for ts, (n, _) in self._totals.items() if start_ms <= ts < end_ms)

    def summarized_between(self, start_ms: int, end_ms: int) -> list[int]:
        """Return the summarized timestamps of `[start_ms, end_ms)`, oldest first."""
        return sorted(ts for ts in self._totals if start_ms <= ts < end_ms)

    def summarize(self, start_ms: int, end_ms: int) -> None:
        """Keep only the count and sum of each timestamp of `[start_ms, end_ms)`.

        For days no later cycle compares value by value (before the lookback): the
        read-back needs only their totals. Such a timestamp's values count as held
        (`held_between`, `totals_between`), but `diff` finds none of them (a sample
        there is new), a commit there replaces the summary with its samples and
        reports nothing gone, and `reconcile` can only forget it whole. Nothing is
        forgotten: `removals` stays. A series left with no value keeps its number
        until the next `forget_before`.
        """
        for ts_ms, column in self._between(start_ms, end_ms):
            values = [value for value in column if value == value]
            old_n, old_sum = self._totals.get(ts_ms, (0, 0.0))
            self._totals[ts_ms] = (old_n + len(values), math.fsum([old_sum, *values]))
            self._columns.pop(ts_ms)
            self._counts.pop(ts_ms, None)
            self._unhold(column, release=False)

    def _between(self, start_ms: int, end_ms: int) -> list[tuple[int, array[float]]]:
        """Return the columns of `[start_ms, end_ms)`, oldest first."""
        return sorted(
            (ts, column)
            for ts, column in self._columns.items()
            if start_ms <= ts < end_ms
        )

    def _pairs(
        self, samples: Sequence[Sample], keys: Sequence[Hashable] | None
    ) -> Iterator[tuple[Sample, Hashable]]:
        """Pair each sample with its key: `keys` in a keyed ledger, else its labels."""
        if self._keyed:
            if keys is None or len(keys) != len(samples):
                raise ValueError("a keyed ledger needs one key per sample")
            return zip(samples, keys, strict=True)
        if isinstance(samples, list | tuple):
            return zip(samples, map(_LABELS, samples), strict=True)
        return ((sample, sample.labels) for sample in samples)

    def diff(
        self,
        samples: Sequence[Sample],
        revisions: list[Revision],
        keys: Sequence[Hashable] | None = None,
        fresh_keys: list[Hashable] | None = None,
    ) -> tuple[list[Sample], int]:
        """Return the samples that are new or changed, and how many of `samples`
        the ledger already held a value for (changed or not), for `commit`.

        Each value lower than the one pushed before is also appended to `revisions`.
        A keyed ledger takes each sample's key in `keys`, and appends those of the
        samples returned to `fresh_keys`; a sample whose labels changed since its
        series' last value is new.
        """
        fresh: list[Sample] = []
        seen = 0
        index, columns, hashes = self._index, self._columns, self._hashes
        keyed = self._keyed
        if keyed and fresh_keys is None:
            raise ValueError("a keyed ledger needs fresh_keys")
        for sample, key in self._pairs(samples, keys):
            by_name = index.get(sample.name)
            number = None if by_name is None else by_name.get(key)  # type: ignore[arg-type]
            if number is not None:
                column = columns.get(sample.ts_ms)
                old = (
                    _ABSENT
                    if column is None or number >= len(column)
                    else column[number]
                )
                if old == old and (  # NaN: no value
                    not keyed or hashes[number] == hash(sample.labels)
                ):
                    seen += 1
                    if old == sample.value:
                        continue
                    if sample.value < old:
                        revisions.append(
                            Revision(
                                sample.name,
                                sample.labels,
                                sample.ts_ms,
                                old,
                                sample.value,
                            )
                        )
            fresh.append(sample)
            if fresh_keys is not None:
                fresh_keys.append(key)
        return fresh, seen

    def commit(
        self,
        samples: Sequence[Sample],
        start_ms: int,
        end_ms: int,
        fresh: tuple[Sequence[Sample], int] | None = None,
        keys: Sequence[Hashable] | None = None,
        fresh_keys: Sequence[Hashable] | None = None,
    ) -> list[Revision]:
        """Record that `samples`, the whole answer for `[start_ms, end_ms)`, landed.

        `fresh` is what `diff` returned for these samples: then only the new and
        changed samples are recorded (the others are held already), and where the
        answer had a sample for every value the ledger held, nothing is scanned.
        A keyed ledger takes the samples' keys in `keys`, and those `diff` gave with
        `fresh` in `fresh_keys`.
        Returns the series and days that were pushed before inside the window but are
        missing from the answer now: their values went down to nothing.
        """
        held = self.held_between(start_ms, end_ms)
        if fresh is not None and fresh[1] == held:
            self._record(fresh[0], fresh_keys)
            return []
        for ts_ms in self.summarized_between(start_ms, end_ms):
            held -= self._totals.pop(ts_ms)[0]  # replaced by this answer
        if not held:
            self._record(samples, keys)
            return []
        landed: set[tuple[int, int]] = set()
        self._record(samples, keys, landed)
        gone: list[Revision] = []
        for number, ts_ms, old in self._values(self._between(start_ms, end_ms)):
            if (number, ts_ms) not in landed:
                name = self._names[number]
                assert name is not None
                labels = self._labels_of(name, self._keys[number])
                gone.append(Revision(name, labels, ts_ms, old, None))
                self._drop(number, ts_ms)
        return gone

    def recording(
        self, samples: Iterable[Sample], keys: list[Hashable] | None = None
    ) -> Iterator[Sample]:
        """Yield `samples`, each once it is recorded as `commit` would record it.

        For a range the ledger holds nothing of (`held_between` is 0: a backfill's
        day), where every sample is new and none can be gone: the samples can go
        on as they are built, without a day's list of them. A keyed ledger takes
        each sample's key out of the list `keys`, to which whatever builds the
        samples adds it before the sample comes. Where what the samples go to fails,
        `forget_between` the range takes back what was recorded (a series whose
        labels changed under its key has forgotten its other values, as a commit
        would have: they are pushed again under the new labels).
        """
        if self._keyed:
            if keys is None:
                raise ValueError("a keyed ledger needs one key per sample")
            # each key is taken out as its sample comes (the last one added): the
            # list holds none between samples
            pairs: Iterator[tuple[Sample, Hashable]] = (
                (sample, keys.pop()) for sample in samples
            )
        else:
            pairs = ((sample, sample.labels) for sample in samples)
        return self._recording(pairs, None)

    def _record(
        self,
        samples: Sequence[Sample],
        keys: Sequence[Hashable] | None,
        landed: set[tuple[int, int]] | None = None,
    ) -> None:
        """Set each sample's value; add `(number, ts_ms)` to `landed` if given."""
        deque(self._recording(self._pairs(samples, keys), landed), maxlen=0)

    def _recording(
        self,
        pairs: Iterable[tuple[Sample, Hashable]],
        landed: set[tuple[int, int]] | None,
    ) -> Iterator[Sample]:
        """Set each sample's value, then yield it; add `(number, ts_ms)` to
        `landed` if given."""
        index, columns, counts, held, hashes = (
            self._index,
            self._columns,
            self._counts,
            self._held,
            self._hashes,
        )
        keyed = self._keyed
        for sample, key in pairs:
            name = sample.name
            by_name = index.get(name)
            if by_name is None:
                by_name = index[name] = _NumberIndex() if self._numbered else {}
            number = by_name.get(key)  # type: ignore[arg-type]
            if number is None:
                number = by_name[key] = self._number(name, key)  # type: ignore[index]
                if keyed:
                    hashes[number] = hash(sample.labels)
            else:
                if not held[number]:  # a series a summary left idle takes a value
                    self._idles -= 1
                if keyed:
                    labels_hash = hash(sample.labels)
                    if hashes[number] != labels_hash:
                        self._relabel(number, labels_hash)
            ts_ms = sample.ts_ms
            column = columns.get(ts_ms)
            if column is None:
                column = columns[ts_ms] = array("d")
            size = len(column)
            if number >= size:
                if number == size:
                    column.append(_ABSENT)
                else:
                    column.extend(array("d", [_ABSENT]) * (number + 1 - size))
            old = column[number]
            if old != old:  # NaN: a new value
                counts[ts_ms] = counts.get(ts_ms, 0) + 1
                held[number] += 1
            column[number] = sample.value
            if landed is not None:
                landed.add((number, ts_ms))
            yield sample

    def _relabel(self, number: int, labels_hash: int) -> None:
        """Forget every value of a series whose labels changed under its key (they
        were pushed under the old ones), without freeing its number, and keep the
        hash of its new labels."""
        self._hashes[number] = labels_hash
        if not self._held[number]:
            return
        self._removals += 1
        for ts_ms, column in list(self._columns.items()):
            if number < len(column) and column[number] == column[number]:
                self._clear(number, ts_ms)
        self._held[number] = 0

    def _number(self, name: str, key: Hashable) -> int:
        """Return a number for a new series: a free one, else the next."""
        if self._free:
            number = self._free.pop()
            self._names[number], self._keys[number] = name, key
            return number
        self._names.append(name)
        self._keys.append(key)
        self._held.append(0)
        if self._keyed:
            self._hashes.append(0)
        number = len(self._names) - 1
        # a numbered ledger keeps its numbers in arrays: no object of their own
        return number if self._numbered else shared_number(number)

    def _drop(self, number: int, ts_ms: int) -> None:
        """Forget one value; a series left with none frees its number."""
        self._removals += 1
        self._clear(number, ts_ms)
        self._held[number] -= 1
        if not self._held[number]:
            self._release(number)

    def _clear(self, number: int, ts_ms: int) -> None:
        """Take a held value out of its column, and the column out once empty."""
        self._columns[ts_ms][number] = _ABSENT
        left = self._counts[ts_ms] - 1
        if left:
            self._counts[ts_ms] = left
        else:
            del self._counts[ts_ms]
            del self._columns[ts_ms]

    def _release(self, number: int) -> None:
        name = self._names[number]
        assert name is not None
        by_name = self._index[name]
        del by_name[self._keys[number]]
        if not by_name:
            del self._index[name]
        self._names[number] = None
        self._keys[number] = -1 if self._numbered else ()
        # the shared object, not the one `enumerate` or `range` made for the scan
        self._free.append(number if self._numbered else shared_number(number))

    @staticmethod
    def _values(
        columns: list[tuple[int, array[float]]],
    ) -> Iterator[tuple[int, int, float]]:
        """Yield `(number, ts_ms, value)` of every value of `columns`, series by
        series in the order of their numbers, each series' oldest first."""
        width = max((len(column) for _, column in columns), default=0)
        for number in range(width):
            for ts_ms, column in columns:
                if number < len(column):
                    value = column[number]
                    if value == value:
                        yield number, ts_ms, value

    def totals_between(self, start_ms: int, end_ms: int) -> tuple[int, float]:
        """Return how many values of `[start_ms, end_ms)` the ledger holds, and their
        sum: exactly rounded, or within a rounding of each summarized timestamp's."""
        values = [
            value
            for _, column in self._between(start_ms, end_ms)
            for value in column
            if value == value
        ]
        summed = [self._totals[ts] for ts in self.summarized_between(start_ms, end_ms)]
        count = len(values) + sum(n for n, _ in summed)
        return count, math.fsum([*values, *(total for _, total in summed)])

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
        change that). Forgotten values count as new, so the next `diff` finds them
        and they are pushed again. Returns their timestamps (one per value).
        """
        lost: list[int] = []
        for ts_ms in self.summarized_between(start_ms, end_ms):
            # no value to compare by series: the whole timestamp counts as lost
            self._removals += 1
            lost += [ts_ms] * self._totals.pop(ts_ms)[0]
        looked_up: dict[int, Mapping[int, float] | None] = {}
        for number, ts_ms, value in list(self._values(self._between(start_ms, end_ms))):
            if number not in looked_up:
                name = self._names[number]
                assert name is not None
                looked_up[number] = held(
                    name, self._labels_of(name, self._keys[number])
                )
            stored = looked_up[number]
            have = None if stored is None else stored.get(ts_ms)
            if have is None or have < value - rel_tolerance * abs(value):
                self._drop(number, ts_ms)
                lost.append(ts_ms)
        return lost

    def forget_between(self, start_ms: int, end_ms: int) -> int:
        """Forget every value of `[start_ms, end_ms)`; return how many."""
        gone = 0
        for ts_ms, _ in self._between(start_ms, end_ms):
            gone += self._forget_column(ts_ms)
        for ts_ms in self.summarized_between(start_ms, end_ms):
            self._removals += 1
            gone += self._totals.pop(ts_ms)[0]
        return gone

    def forget_before(self, ts_ms: int) -> None:
        """Drop the values older than `ts_ms`: they will never be fetched again.
        Free the numbers of the series that summaries left holding nothing."""
        for old in [ts for ts in self._columns if ts < ts_ms]:
            self._forget_column(old)
        for old in [ts for ts in self._totals if ts < ts_ms]:
            self._removals += 1
            del self._totals[old]
        if self._idles:  # indexed series holding nothing: those summaries left
            names, held = self._names, self._held
            for number in [
                n for n, h in enumerate(held) if not h and names[n] is not None
            ]:
                self._release(number)
            self._idles = 0

    def _forget_column(self, ts_ms: int) -> int:
        """Forget every value at `ts_ms`; return how many."""
        self._removals += 1
        column = self._columns.pop(ts_ms)
        self._counts.pop(ts_ms, None)
        return self._unhold(column)

    def _unhold(self, column: array[float], *, release: bool = True) -> int:
        """Count off the values of a column let go; free the numbers of the series
        left with none, or count them idle (`release` false: see `summarize`).
        Return how many values it held."""
        held = self._held
        gone = 0
        for number, value in enumerate(column):
            if value == value:
                gone += 1
                held[number] -= 1
                if not held[number]:
                    if release:
                        self._release(number)
                    else:
                        self._idles += 1
        return gone
