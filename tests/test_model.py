"""Points: the packed per-series value store used by cost tables and ledgers."""

from __future__ import annotations

import sys
import threading
from collections.abc import Hashable
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openai_cost_pusher import model
from openai_cost_pusher.ledger import Ledger
from openai_cost_pusher.model import (
    Columns,
    GroupedIndex,
    Points,
    Sample,
    shared_number,
)

STEP = 86_400


def test_points_grow_both_ways_and_keep_gaps() -> None:
    """Setting before the first or after the last point extends the array with gaps."""
    points = Points(STEP)
    points[10 * STEP] = 1.0
    points[7 * STEP] = 2.0
    points[13 * STEP] = 3.0
    assert list(points.items()) == [(7 * STEP, 2.0), (10 * STEP, 1.0), (13 * STEP, 3.0)]
    assert points.get(8 * STEP) is None
    assert points.get(100 * STEP) is None
    assert len(points) == 3


def test_points_reject_timestamps_off_the_grid() -> None:
    """A timestamp that is not a whole number of steps away is an error."""
    points = Points(STEP)
    points[0] = 1.0
    with pytest.raises(ValueError, match="not on the"):
        points[STEP + 1] = 2.0


def test_add_sums_and_delete_removes() -> None:
    """add() sums into a point; del removes it; empty points are falsy."""
    points = Points(STEP)
    points.add(STEP, 0.1)
    points.add(STEP, 0.2)
    assert points.get(STEP) == 0.1 + 0.2
    del points[STEP]
    del points[5 * STEP]  # absent: nothing happens
    assert not points
    assert STEP not in points


def test_drop_before_forgets_old_points() -> None:
    """drop_before() removes every point strictly before the timestamp."""
    points = Points(STEP)
    for day in range(5):
        points[day * STEP] = float(day)
    points.drop_before(2 * STEP)
    assert dict(points.items()) == {2 * STEP: 2.0, 3 * STEP: 3.0, 4 * STEP: 4.0}
    points.drop_before(10 * STEP)
    assert not points
    points[20 * STEP] = 1.0
    assert dict(points.items()) == {20 * STEP: 1.0}


@given(st.dictionaries(st.integers(-50, 50), st.floats(allow_nan=False), max_size=30))
def test_points_behave_like_a_dict(values: dict[int, float]) -> None:
    """Any set of grid points reads back exactly as a dict would hold it."""
    points = Points(STEP)
    for idx, value in values.items():
        points[idx * STEP] = value
    expected = {idx * STEP: value for idx, value in values.items()}
    assert points == expected
    assert dict(points.items()) == expected
    assert list(points.items()) == sorted(expected.items())


@given(
    st.lists(
        st.tuples(
            st.integers(-20, 20),
            st.floats(allow_nan=False, allow_infinity=False, width=32),
        ),
        max_size=40,
    ),
    st.lists(st.integers(-20, 20), max_size=5),
)
def test_add_sums_each_point_in_order(
    adds: list[tuple[int, float]], gone: list[int]
) -> None:
    """Any run of adds (inside, before, after or far past the points) and deletes
    leaves each point at the sum, in order, of what was added since."""
    points, sums = Points(STEP), dict[int, float]()
    for i, (day, value) in enumerate(adds):
        if i < len(gone):
            del points[gone[i] * STEP]
            sums.pop(gone[i], None)
        points.add(day * STEP, value)
        sums[day] = sums[day] + value if day in sums else value
    assert dict(points.items()) == {d * STEP: v for d, v in sorted(sums.items())}
    if adds:  # the grid is set by the first point
        with pytest.raises(ValueError, match="not on the"):
            points.add(STEP // 2, 1.0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcde"),
            st.integers(0, 4),
            st.floats(-1e6, 1e6, allow_nan=False),
        ),
        max_size=40,
    ),
    st.sets(st.integers(0, 4)),
)
def test_columns_hold_what_a_dict_of_sums_holds(
    adds: list[tuple[str, int, float]], dropped: set[int]
) -> None:
    """Values added to `Columns` sum per series and timestamp as a dict would; `at`
    yields a timestamp's values in the order series were first added, and a dropped
    timestamp holds nothing."""
    columns: Columns[str] = Columns()
    sums: dict[tuple[str, int], float] = {}
    order: list[str] = []
    for key, ts, value in adds:
        columns.add(key, ts, value)
        sums[key, ts] = sums[key, ts] + value if (key, ts) in sums else value
        if key not in order:
            order.append(key)
    for ts in dropped:
        columns.drop(ts)
    assert list(columns) == order
    assert len(columns) == len(order)
    for ts in range(5):
        want = [
            (k, sums[k, ts]) for k in order if (k, ts) in sums and ts not in dropped
        ]
        assert list(columns.at(ts)) == want
        for key in "abcdef":
            assert columns.get(key, ts) == dict(want).get(key)
    assert columns.timestamps() == sorted({ts for _, ts in sums} - dropped)


@pytest.mark.parametrize("pairs", [False, True], ids=["costs", "usage"])
@given(
    st.lists(
        st.tuples(
            st.sampled_from("pqr"),
            st.sampled_from("xyz"),
            st.integers(0, 3),
            st.floats(-1e6, 1e6, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_a_grouped_index_numbers_as_a_dict_does(
    pairs: bool, adds: list[tuple[str, str, int, float]]
) -> None:
    """Over a `GroupedIndex`, `Columns` give each series the number a dict index
    gives it and hold the same values; the keys come group by group, each group's
    in number order, and `key_of` gives each number's key. Keys
    are `(project, line item, currency)` as a daily metric's, or `(metric name,
    labels)` as the usage series' (`pairs`)."""

    def key_of(group: str, item: str) -> tuple[Hashable, ...]:
        return (group, (("item", item),)) if pairs else (group, item, "usd")

    plain: Columns[tuple[Hashable, ...]] = Columns()
    grouped_index: GroupedIndex[tuple[Hashable, ...]] = GroupedIndex(pairs=pairs)
    grouped: Columns[tuple[Hashable, ...]] = Columns(grouped_index)
    first_given: dict[tuple[Hashable, ...], tuple[Hashable, ...]] = {}
    for group, item, ts, value in adds:
        key = key_of(group, item)
        first_given.setdefault(key, key)
        plain.add(key, ts, value)
        grouped.add(key, ts, value)
        assert grouped.number(key) == plain.number(key)
        assert grouped_index.key_of(grouped.number(key)) == key  # as it grows
    numbers = dict(plain.index.items())
    assert dict(grouped.index.items()) == numbers
    assert len(grouped) == len(numbers)
    assert [grouped_index.key_of(n) for n in range(len(numbers))] == list(numbers)
    in_groups = list(grouped)
    assert sorted(in_groups, key=repr) == sorted(numbers, key=repr)
    groups = [k[0] for k in in_groups]
    runs = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert len(runs) == len(set(runs))  # each group's keys together
    for first in runs:  # each group's in number order
        numbered = [numbers[k] for k in in_groups if k[0] == first]
        assert numbered == sorted(numbered)
    for ts in range(4):
        assert sorted(grouped.numbered_at(ts), key=repr) == sorted(
            plain.numbered_at(ts), key=repr
        )
        for key in numbers:
            assert grouped.get(key, ts) == plain.get(key, ts)
    if pairs:  # the labels are the very tuple first given (the renderer's key)
        assert all(k[1] is first_given[k][1] for k in in_groups)
    rests = {id(rest) for group in grouped_index._groups.values() for rest in group}
    if not pairs:  # the rest of a key is one tuple, whichever groups hold it
        assert len(rests) == len({key[1:] for key in numbers})
    with pytest.raises(KeyError):
        grouped_index[key_of("absent", "x")]


def test_series_numbers_are_one_object_per_number() -> None:
    """The tables' indexes and the ledgers hold one int object per number, past the
    ints CPython shares anyway (up to 256): not one per index entry."""
    costs: Columns[tuple[str, str]] = Columns()
    quantities: Columns[tuple[str, str]] = Columns()
    ledger = Ledger()
    for i in range(400):
        costs.number(("p", str(i)))
        quantities.number(("q", str(i)))
    ledger.commit([Sample("m", (("i", str(i)),), 1.0, 0) for i in range(400)], 0, 1)
    number = costs.index[("p", "399")]
    assert number == 399
    assert quantities.index[("q", "399")] is number
    index = cast(dict[Hashable, int], ledger._index["m"])
    numbered = index[(("i", "399"),)]
    assert numbered == 399 and numbered is number
    # a freed number handed out again is the shared object too
    ledger.forget_before(1)
    ledger.commit([Sample("m", (("i", "x"),), 1.0, 5)], 5, 6)
    index = cast(dict[Hashable, int], ledger._index["m"])
    assert index[(("i", "x"),)] is shared_number(index[(("i", "x"),)])


def test_shared_numbers_grow_right_from_many_threads() -> None:
    """Grown from several threads at once, every entry is still its own number."""
    base = len(model._NUMBERS)  # past what other tests grew the pool to
    wanted = [base + (i * 7919) % 50_000 for i in range(20_000)]
    got: list[list[int]] = [[] for _ in range(4)]

    def take(out: list[int], order: list[int]) -> None:
        out.extend(shared_number(n) for n in order)

    threads = [
        threading.Thread(target=take, args=(got[t], wanted[t::4] + wanted[::-1]))
        for t in range(4)
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    for t in range(4):
        assert got[t] == wanted[t::4] + wanted[::-1]
