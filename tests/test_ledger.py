"""Test the ledger of pushed values: what is re-pushed, what is a downward revision.

VictoriaMetrics' dedup keeps the largest value at a timestamp, so a lower value cannot
replace a pushed one: the ledger reports it. Equal values are never pushed twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher.ledger import Ledger, Revision
from openai_cost_pusher.model import Labels, Sample

DAY_MS = 86_400_000
D0 = 1_730_419_200_000  # 2024-11-01 00:00 UTC in ms
A: Labels = (("project_id", "proj_a"),)
B: Labels = (("project_id", "proj_b"),)
NAME = "openai_daily_cost"
OTHER = "openai_daily_cost_quantity"


def _s(labels: Labels, day: int, value: float) -> Sample:
    """Return a daily cost sample `day` days after D0."""
    return Sample(NAME, labels, value, D0 + day * DAY_MS)


def _window(first_day: int, days: int) -> tuple[int, int]:
    """Return `[start_ms, end_ms)` for `days` days from `first_day`."""
    return D0 + first_day * DAY_MS, D0 + (first_day + days) * DAY_MS


def _changed(
    ledger: Ledger, samples: list[Sample]
) -> tuple[list[Sample], list[Revision]]:
    """Return the samples `diff` finds new or changed, and the revisions it reports."""
    revisions: list[Revision] = []
    return ledger.diff(samples, revisions)[0], revisions


def test_empty_ledger_yields_everything() -> None:
    """Before anything is committed, every sample is new."""
    samples = [_s(A, 0, 1.0), _s(A, 1, 2.0), _s(B, 0, 3.0)]
    changed, revisions = _changed(Ledger(), samples)
    assert changed == samples
    assert revisions == []


def test_diff_does_not_record() -> None:
    """`diff` alone records nothing: a push that failed is retried in full."""
    ledger = Ledger()
    samples = [_s(A, 0, 1.0)]
    assert _changed(ledger, samples)[0] == samples
    assert _changed(ledger, samples)[0] == samples
    assert len(ledger) == 0


def test_equal_values_are_not_repushed() -> None:
    """After a commit, the same values yield nothing."""
    ledger = Ledger()
    samples = [_s(A, 0, 1.0), _s(A, 1, 2.0), _s(B, 1, 0.0)]
    assert ledger.commit(samples, *_window(0, 2)) == []
    assert len(ledger) == 3
    assert _changed(ledger, samples) == ([], [])


def test_new_and_changed_values_only() -> None:
    """Only new days, new series and changed values are yielded, in input order."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0), _s(A, 1, 2.0)], *_window(0, 2))
    now = [_s(A, 0, 1.0), _s(A, 1, 2.5), _s(A, 2, 0.5), _s(B, 1, 4.0)]
    changed, revisions = _changed(ledger, now)
    assert changed == [_s(A, 1, 2.5), _s(A, 2, 0.5), _s(B, 1, 4.0)]
    assert revisions == []


def test_downward_revision_is_pushed_and_reported() -> None:
    """A lower value is still yielded and reported with its old and new values."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 5.0), _s(A, 1, 2.0)], *_window(0, 2))
    changed, revisions = _changed(ledger, [_s(A, 0, 4.5), _s(A, 1, 2.0)])
    assert changed == [_s(A, 0, 4.5)]
    assert revisions == [Revision(NAME, A, D0, 5.0, 4.5)]


def test_downward_revision_reported_once() -> None:
    """After the lower value is committed, it is neither re-pushed nor re-reported."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 5.0)], *_window(0, 1))
    lower = [_s(A, 0, 4.5)]
    assert len(_changed(ledger, lower)[1]) == 1
    assert ledger.commit(lower, *_window(0, 1)) == []
    assert _changed(ledger, lower) == ([], [])


def test_commit_reports_vanished_points_inside_window() -> None:
    """A series or day pushed before and missing now, inside the window, is reported."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0), _s(A, 1, 2.0), _s(B, 1, 3.0)], *_window(0, 2))
    gone = ledger.commit([_s(A, 0, 1.0)], *_window(0, 2))
    assert sorted(gone, key=lambda r: (r.labels, r.ts_ms)) == [
        Revision(NAME, A, D0 + DAY_MS, 2.0, None),
        Revision(NAME, B, D0 + DAY_MS, 3.0, None),
    ]
    assert len(ledger) == 1
    # reappearing later, a vanished point counts as new again
    assert _changed(ledger, [_s(B, 1, 3.0)])[0] == [_s(B, 1, 3.0)]


def test_commit_keeps_points_outside_window() -> None:
    """Points older than the window, or at its end, are neither reported nor dropped."""
    ledger = Ledger()
    ledger.commit([_s(A, day, 1.0) for day in range(5)], *_window(0, 5))
    gone = ledger.commit([_s(A, 2, 1.0), _s(A, 3, 1.0)], *_window(2, 2))
    assert gone == []
    assert len(ledger) == 5
    assert _changed(ledger, [_s(A, day, 1.0) for day in range(5)]) == ([], [])


def test_commit_window_end_is_exclusive() -> None:
    """A point at `end_ms` is outside the window and survives a commit."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0), _s(A, 1, 1.0)], *_window(0, 2))
    assert ledger.commit([], *_window(0, 1)) == [Revision(NAME, A, D0, 1.0, None)]
    assert len(ledger) == 1


def test_commit_records_new_values() -> None:
    """A commit replaces pushed values by the current answer."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0)], *_window(0, 1))
    ledger.commit([_s(A, 0, 3.0)], *_window(0, 1))
    assert _changed(ledger, [_s(A, 0, 3.0)]) == ([], [])
    assert _changed(ledger, [_s(A, 0, 1.0)])[1] == [Revision(NAME, A, D0, 3.0, 1.0)]


def test_forget_before_drops_old_points() -> None:
    """Points older than the cut are forgotten; newer ones, and the cut day, stay."""
    ledger = Ledger()
    ledger.commit(
        [_s(A, 0, 1.0), _s(A, 1, 1.0), _s(A, 2, 1.0), _s(B, 0, 1.0)], *_window(0, 3)
    )
    ledger.forget_before(D0 + DAY_MS)
    assert len(ledger) == 2
    everything = [_s(A, 0, 1.0), _s(A, 1, 1.0), _s(A, 2, 1.0), _s(B, 0, 1.0)]
    assert _changed(ledger, everything)[0] == [_s(A, 0, 1.0), _s(B, 0, 1.0)]
    # a forgotten point is not reported as vanished either
    assert ledger.commit([], *_window(-5, 5)) == []


def test_series_are_told_apart_by_name_and_labels() -> None:
    """The same labels under another metric name, or at another time, are new."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0)], *_window(0, 1))
    other_name = Sample("openai_cost_today", A, 1.0, D0)
    changed, _ = _changed(ledger, [other_name, _s(A, 0, 1.0)])
    assert changed == [other_name]


def test_diff_counts_the_values_held() -> None:
    """`diff` counts the samples whose series and day the ledger holds, changed or
    not: what `commit` compares with what the range held."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0), _s(B, 0, 2.0)], *_window(0, 1))
    fresh, seen = ledger.diff([_s(A, 0, 1.5), _s(B, 0, 2.0), _s(A, 1, 1.0)], [])
    assert (fresh, seen) == ([_s(A, 0, 1.5), _s(A, 1, 1.0)], 2)


def test_commit_of_fresh_samples_still_finds_vanished_values() -> None:
    """Given `diff`'s result, a commit records only the fresh samples, yet a series
    missing from the answer is still reported gone."""
    ledger = Ledger()
    ledger.commit([_s(A, 0, 1.0), _s(B, 0, 2.0)], *_window(0, 1))
    answer = [_s(A, 0, 1.0)]
    fresh = ledger.diff(answer, [])
    assert fresh == ([], 1)
    assert ledger.commit(answer, *_window(0, 1), fresh) == [
        Revision(NAME, B, D0, 2.0, None)
    ]
    assert ledger.held_between(*_window(0, 1)) == 1


def test_a_summarized_day_counts_its_values_and_a_commit_replaces_them() -> None:
    """A day kept as its totals still counts and sums its values, finds none of
    them in `diff`, and a commit of the day replaces the summary with its samples,
    reporting nothing gone (there is nothing to compare)."""
    ledger = Ledger()
    day = [_s(A, 0, 2.0), _s(B, 0, 3.0)]
    ledger.commit(day, *_window(0, 1))
    ledger.commit([_s(A, 1, 5.0)], *_window(1, 1))
    ledger.summarize(*_window(0, 1))
    assert ledger.summarized_between(*_window(0, 2)) == [D0]
    assert ledger.held_between(*_window(0, 2)) == len(ledger) == 3
    assert ledger.totals_between(*_window(0, 1)) == (2, 5.0)
    assert ledger.series == 1  # B held nothing else: its number is free
    assert ledger.diff(day, []) == (day, 0)
    again = [_s(A, 0, 2.0)]
    assert ledger.commit(again, *_window(0, 1), ledger.diff(again, [])) == []
    assert ledger.summarized_between(*_window(0, 2)) == []
    assert ledger.held_between(*_window(0, 2)) == len(ledger) == 2
    assert ledger.totals_between(*_window(0, 1)) == (1, 2.0)
    ledger.summarize(*_window(0, 2))
    assert ledger.reconcile(lambda name, labels: None, *_window(0, 1)) == [D0]
    assert ledger.held_between(*_window(0, 2)) == 1 and ledger.series == 0


def test_a_summary_keeps_series_numbered_until_the_cycle_ends() -> None:
    """A backfill summarizes each day before the lookback as it lands: the next
    day's series keep their numbers (no index entry freed and made again, series by
    series, day after day), still count as holding nothing, and `forget_before`
    (once a cycle) frees those that got no value since."""
    ledger = Ledger()
    series = [(("project_id", f"p{i}"),) for i in range(300)]
    ledger.commit([_s(lab, 0, 1.0) for lab in series], *_window(0, 1))
    numbers = dict(cast(dict[Hashable, int], ledger._index[NAME]))
    ledger.summarize(*_window(0, 1))
    assert ledger.series == 0
    assert ledger.held_between(*_window(0, 1)) == 300
    day = [_s(lab, 1, 2.0) for lab in series[:200]]
    assert ledger.diff(day, []) == (day, 0)
    ledger.commit(day, *_window(1, 1))
    assert ledger._index[NAME] == numbers  # the same series, the same numbers
    assert ledger.series == 200
    ledger.forget_before(D0)  # nothing older: only the sweep
    assert ledger.series == 200 and len(ledger._index[NAME]) == 200
    assert ledger.held_between(*_window(0, 2)) == 500
    # the freed numbers go to new series, which hold only their own values
    ledger.commit([_s((("project_id", "new"),), 2, 3.0)], *_window(2, 1))
    index = cast(dict[Hashable, int], ledger._index[NAME])
    assert index[(("project_id", "new"),)] in set(numbers[lab] for lab in series[200:])
    assert ledger.totals_between(*_window(2, 1)) == (1, 3.0)
    assert ledger.series == 201


_ANSWERS = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([A, B, (("project_id", "proj_c"),)]),
            st.integers(0, 3),
            st.sampled_from([0.0, 1.0, 2.5, 7.0]),
        ),
        max_size=8,
        unique_by=lambda t: (t[0], t[1]),
    ),
    min_size=1,
    max_size=6,
)


@given(_ANSWERS, st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3))))
def test_commit_of_fresh_samples_equals_commit_of_all(
    answers: list[list[tuple[Labels, int, float]]],
    windows: list[tuple[int, int]],
) -> None:
    """Committing `diff`'s fresh samples leaves the ledger, and reports the values
    gone, exactly as committing every sample does, over any run of answers."""
    whole, quick = Ledger(), Ledger()
    for i, answer in enumerate(answers):
        first, days = windows[i] if i < len(windows) else (0, 4)
        start, end = _window(first, days)
        samples = [
            _s(lab, d, v) for lab, d, v in answer if start <= D0 + d * DAY_MS < end
        ]
        gone_whole = whole.commit(samples, start, end)
        gone_quick = quick.commit(samples, start, end, quick.diff(samples, []))
        key = lambda r: (r.labels, r.ts_ms)  # noqa: E731
        assert sorted(gone_quick, key=key) == sorted(gone_whole, key=key)
        probe = [_s(lab, d, v) for lab in (A, B) for d in range(4) for v in (1.0,)]
        assert quick.diff(probe, []) == whole.diff(probe, [])
        assert len(quick) == len(whole)
        assert quick.held_between(*_window(0, 4)) == len(whole)


class _Reference:
    """The ledger's contract as a plain dict of (series, ts_ms) to value."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, Labels, int], float] = {}
        self.summed: set[int] = set()  # timestamps kept as totals only

    def commit(
        self, samples: list[Sample], start: int, end: int
    ) -> set[tuple[str, Labels, int, float]]:
        # a summarized timestamp's values are replaced by the answer's, silently
        replaced = {ts for ts in self.summed if start <= ts < end}
        self.summed -= replaced
        self.drop(lambda k, v: k[2] not in replaced)
        landed = {(s.name, s.labels, s.ts_ms) for s in samples}
        gone = {
            (k[0], k[1], k[2], v)
            for k, v in self.values.items()
            if start <= k[2] < end and k not in landed
        }
        for name, labels, ts, _ in gone:
            del self.values[name, labels, ts]
        for s in samples:
            self.values[s.name, s.labels, s.ts_ms] = s.value
        return gone

    def drop(self, keep: Callable[..., bool]) -> int:
        before = len(self.values)
        self.values = {k: v for k, v in self.values.items() if keep(k, v)}
        self.summed &= {k[2] for k in self.values}
        return before - len(self.values)


_LABELS = [(("project_id", f"proj_{c}"),) for c in "abcdef"]
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), _ANSWERS.map(lambda a: a[0]), st.integers(0, 5)),
        st.tuples(st.just("before"), st.integers(0, 6), st.just(0)),
        st.tuples(st.just("between"), st.integers(0, 5), st.integers(1, 3)),
        st.tuples(st.just("reconcile"), st.integers(0, 5), st.integers(1, 3)),
        st.tuples(st.just("summarize"), st.integers(0, 5), st.integers(1, 3)),
    ),
    max_size=25,
)


def _key_of(labels: Labels) -> str:
    """A key for each of the model's labels (a project id), as a table keys them."""
    return labels[0][1]


def _labels_of(name: str, key: Hashable) -> Labels:
    """The labels of a keyed series in the model: those `_key_of` took the key of."""
    del name
    return (("project_id", str(key)),)


_TABLE: dict[Labels, int] = {}
"""The model's series numbers, as a table's index gives them (`numbered`)."""


def _number_of(labels: Labels) -> int:
    """A series' number in the model's table, given on first sight."""
    return _TABLE.setdefault(labels, len(_TABLE))


def _labels_of_number(name: str, number: Hashable) -> Labels:
    """The labels of the series numbered `number` in the model's table."""
    del name
    return list(_TABLE)[cast(int, number)]


def _ledger(mode: str) -> Ledger:
    """A ledger by labels, by keys (`_key_of`), or by table numbers (`_number_of`)."""
    if mode == "numbered":
        return Ledger(_labels_of_number, numbered=True)
    return Ledger(_labels_of if mode == "keyed" else None)


def _key(ledger: Ledger, labels: Labels) -> Hashable:
    """A sample's key in a keyed ledger: its table number in a numbered one."""
    return _number_of(labels) if ledger.numbered else _key_of(labels)


def _diff(ledger: Ledger, samples: list[Sample]) -> tuple[list[Sample], int]:
    """`diff`, with each sample's key where the ledger is keyed."""
    if not ledger.keyed:
        return ledger.diff(samples, [])
    return ledger.diff(samples, [], [_key(ledger, s.labels) for s in samples], [])


def _commit(
    ledger: Ledger,
    samples: list[Sample],
    start: int,
    end: int,
    key_of: Callable[[Labels], Hashable] = _key_of,
) -> list[Revision]:
    """`commit` of `diff`'s fresh samples, with their keys (`key_of` their labels,
    their table numbers in a numbered ledger) where the ledger is keyed."""
    if not ledger.keyed:
        return ledger.commit(samples, start, end, ledger.diff(samples, []))
    if ledger.numbered:
        key_of = _number_of
    keys: list[Hashable] = [key_of(s.labels) for s in samples]
    fresh_keys: list[Hashable] = []
    fresh = ledger.diff(samples, [], keys, fresh_keys)
    assert fresh_keys == [key_of(s.labels) for s in fresh[0]]
    return ledger.commit(samples, start, end, fresh, keys, fresh_keys)


@pytest.mark.parametrize("mode", ["labels", "keyed", "numbered"])
@settings(max_examples=600, deadline=None)
@given(ops=_OPS)
def test_the_ledger_holds_what_a_plain_dict_would(
    mode: str,
    ops: list[tuple[str, Any, int]],
) -> None:
    """Any run of commits, forgets, read-backs and summaries leaves the ledger
    holding exactly what a dict of (series, timestamp) to value holds: numbers freed
    by vanished series and reused by new ones never carry a value over; a
    summarized timestamp still counts and sums its values, but `diff` finds none of
    them, a commit replaces them and a read-back forgets them whole. A ledger keyed
    by what the caller gives with each sample holds the very same, and reports and
    reads back its series by the labels `labels_of` gives, and so does one keyed
    by the series' numbers in the caller's table."""
    ledger, ref = _ledger(mode), _Reference()
    fresh_labels = iter((("project_id", f"new_{i}"),) for i in range(10_000))
    for op, arg, n in ops:
        if op == "commit":
            start, end = _window(n, 2)
            # odd days under a second metric name: the same labels tuple is a
            # second series there, and numbers freed by one name go to the other
            samples = [
                Sample(
                    NAME if d % 2 == 0 else OTHER,
                    lab if lab in (A, B) else next(fresh_labels),
                    v,
                    D0 + d * DAY_MS,
                )
                for lab, d, v in arg
                if start <= D0 + d * DAY_MS < end
            ]
            gone = _commit(ledger, samples, start, end)
            assert {(r.name, r.labels, r.ts_ms, r.old) for r in gone} == ref.commit(
                samples, start, end
            )
            assert all(r.new is None for r in gone)
        elif op == "before":
            ledger.forget_before(D0 + arg * DAY_MS)
            ref.drop(lambda k, v, cut=D0 + arg * DAY_MS: k[2] >= cut)
        elif op == "between":
            start, end = _window(arg, n)
            assert ledger.forget_between(start, end) == ref.drop(
                lambda k, v, s=start, e=end: not s <= k[2] < e
            )
        elif op == "summarize":
            start, end = _window(arg, n)
            removals = ledger.removals
            ledger.summarize(start, end)
            ref.summed |= {k[2] for k in ref.values if start <= k[2] < end}
            assert ledger.removals == removals  # nothing forgotten
        else:  # the store kept only values of at least 2.0
            # forgotten: what the store lacks, and summarized timestamps whole
            _reconcile_both(
                ledger,
                ref,
                *_window(arg, n),
                lambda k, v: v < 2.0 or k[2] in ref.summed,
            )
        window = _window(0, 8)
        assert len(ledger) == len(ref.values)
        assert ledger.held_between(*window) == len(ref.values)
        count, total = ledger.totals_between(*window)
        assert count == len(ref.values)
        assert total == pytest.approx(math.fsum(ref.values.values()), rel=1e-15)
        if not ref.summed:
            assert total == math.fsum(ref.values.values())  # exactly rounded
        assert ledger.summarized_between(*window) == sorted(ref.summed)
        probe = [Sample(k[0], k[1], v, k[2]) for k, v in ref.values.items()]
        unknown = [p for p in probe if p.ts_ms in ref.summed]
        assert _diff(ledger, probe) == (unknown, len(probe) - len(unknown))
        # a series left with no value is forgotten: the ledger stays bounded
        assert ledger.series == len(
            {(k[0], k[1]) for k in ref.values if k[2] not in ref.summed}
        )


def test_a_keyed_series_whose_labels_changed_is_pushed_again_whole() -> None:
    """Under a key whose labels changed (a renamed project), every value is new, day
    after day, and none is reported: they were pushed under the old labels, which
    the store keeps. A value lower than before is then no downward revision."""
    names = {"proj_a": "old"}

    def labels_of(name: str, key: Hashable) -> Labels:
        return (("project", names[str(key)]), ("project_id", str(key)))

    ledger = Ledger(labels_of)
    days = [
        Sample(NAME, labels_of(NAME, "proj_a"), 5.0, D0 + d * DAY_MS) for d in range(3)
    ]
    for day in days:
        assert _commit_keyed(ledger, [day], "proj_a") == ([day], [])
    names["proj_a"] = "new"
    renamed = [s._replace(labels=labels_of(NAME, "proj_a"), value=4.0) for s in days]
    removals = ledger.removals
    for i, day in enumerate(renamed):
        # the first day's commit forgets the old labels' values of the other days
        assert _commit_keyed(ledger, [day], "proj_a") == ([day], [])
        assert ledger.held_between(*_window(0, 3)) == i + 1
    assert ledger.removals == removals + 1
    assert ledger.series == 1
    assert ledger.totals_between(*_window(0, 3)) == (3, 12.0)
    # unchanged since: nothing new, and no gone value reported by the old labels
    for day in renamed:
        assert _commit_keyed(ledger, [day], "proj_a") == ([], [])
    # gone values are reported by the labels `labels_of` gives now
    gone = ledger.commit([], *_window(0, 1), None, [])
    assert [(r.labels, r.old) for r in gone] == [(labels_of(NAME, "proj_a"), 4.0)]


def _commit_keyed(
    ledger: Ledger, samples: list[Sample], key: Hashable
) -> tuple[list[Sample], list[Revision]]:
    """Diff and commit `samples` of one day, all under `key`; return the fresh
    samples and the revisions both reported."""
    revisions: list[Revision] = []
    fresh_keys: list[Hashable] = []
    keys = [key] * len(samples)
    fresh = ledger.diff(samples, revisions, keys, fresh_keys)
    ts = samples[0].ts_ms
    revisions += ledger.commit(samples, ts, ts + DAY_MS, fresh, keys, fresh_keys)
    return fresh[0], revisions


def test_a_keyed_ledger_refuses_samples_without_keys() -> None:
    """A keyed ledger cannot find a series by its labels: samples given without
    their keys (or not one each) are refused before anything is recorded."""
    ledger = Ledger(_labels_of)
    samples = [_s(A, 0, 1.0), _s(B, 0, 2.0)]
    for keys in (None, ["proj_a"]):
        with pytest.raises(ValueError, match="one key per sample"):
            ledger.diff(samples, [], keys, [])
        with pytest.raises(ValueError, match="one key per sample"):
            ledger.commit(samples, *_window(0, 1), None, keys)
    with pytest.raises(ValueError, match="fresh_keys"):
        ledger.diff(samples, [], ["proj_a", "proj_b"])
    assert len(ledger) == 0 and ledger.series == 0


_KEYS = ["p0", "p1", "p2"]
_RENAMING_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("commit"),
            st.lists(
                st.tuples(
                    st.sampled_from(_KEYS),
                    st.integers(0, 3),
                    st.sampled_from([0.0, 1.0, 2.5, 7.0]),
                ),
                max_size=6,
                unique_by=lambda t: (t[0], t[1]),
            ),
            st.integers(0, 3),
        ),
        st.tuples(st.just("rename"), st.sampled_from(_KEYS), st.integers(0, 2)),
        st.tuples(st.just("before"), st.integers(0, 4), st.just(0)),
        st.tuples(st.just("reconcile"), st.integers(0, 3), st.integers(1, 3)),
        st.tuples(st.just("summarize"), st.integers(0, 3), st.integers(1, 3)),
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(_RENAMING_OPS)
def test_a_keyed_ledger_holds_what_a_plain_dict_would_through_renames(
    ops: list[tuple[str, Any, int]],
) -> None:
    """A keyed ledger over series renamed at any point holds what a dict of (series,
    labels, timestamp) to value holds, where a value recorded under new labels
    silently takes the place of every value its key held under others (those of
    summarized timestamps stay counted); gone values are reported, and series read
    back, by the labels their keys have now."""
    names = dict.fromkeys(_KEYS, "n0")

    def labels_of(name: str, key: Hashable) -> Labels:
        del name
        return (("project", names[str(key)]), ("project_id", str(key)))

    def key_of(labels: Labels) -> str:
        return labels[1][1]

    ledger, ref = Ledger(labels_of), _Reference()
    for op, arg, n in ops:
        if op == "commit":
            start, end = _window(n, 2)
            samples = [
                Sample(NAME, labels_of(NAME, k), v, D0 + d * DAY_MS)
                for k, d, v in arg
                if start <= D0 + d * DAY_MS < end
            ]
            for s in samples:  # the values the new labels take the place of
                ref.values = {
                    k: v
                    for k, v in ref.values.items()
                    if key_of(k[1]) != key_of(s.labels)
                    or k[1] == s.labels
                    or k[2] in ref.summed
                }
            gone = _commit(ledger, samples, start, end, key_of)
            expected = ref.commit(samples, start, end)
            assert {(r.name, key_of(r.labels), r.ts_ms, r.old) for r in gone} == {
                (name, key_of(labels), ts, old) for name, labels, ts, old in expected
            }
            assert all(r.labels == labels_of(r.name, key_of(r.labels)) for r in gone)
        elif op == "rename":
            names[arg] = f"n{n}"
        elif op == "before":
            ledger.forget_before(D0 + arg * DAY_MS)
            ref.drop(lambda k, v, cut=D0 + arg * DAY_MS: k[2] >= cut)
        elif op == "summarize":
            start, end = _window(arg, n)
            ledger.summarize(start, end)
            ref.summed |= {k[2] for k in ref.values if start <= k[2] < end}
        else:  # the store kept only values of at least 2.0, under their labels
            _reconcile_both(
                ledger,
                ref,
                *_window(arg, n),
                lambda k, v: (
                    v < 2.0
                    or k[2] in ref.summed
                    or k[1] != labels_of(k[0], key_of(k[1]))
                ),
            )
        window = _window(0, 8)
        assert len(ledger) == len(ref.values)
        assert ledger.held_between(*window) == len(ref.values)
        assert ledger.totals_between(*window)[0] == len(ref.values)
        assert ledger.summarized_between(*window) == sorted(ref.summed)
        probe = [Sample(k[0], k[1], v, k[2]) for k, v in ref.values.items()]
        unknown = [p for p in probe if p.ts_ms in ref.summed]
        keys = [key_of(p.labels) for p in probe]
        assert ledger.diff(probe, [], keys, []) == (
            unknown,
            len(probe) - len(unknown),
        )
        assert ledger.series == len(
            {(k[0], key_of(k[1])) for k in ref.values if k[2] not in ref.summed}
        )


def _reconcile_both(
    ledger: Ledger,
    ref: _Reference,
    start: int,
    end: int,
    lacks: Callable[[tuple[str, Labels, int], float], bool],
) -> None:
    """Read `[start, end)` back into `ledger` from a store holding the reference's
    values of at least 2.0 under their labels; forget in the reference what `lacks`
    says the ledger must forget, and check that it forgot as many."""
    lost = ledger.reconcile(
        lambda name, labels: {
            k[2]: v
            for k, v in ref.values.items()
            if (k[0], k[1]) == (name, labels) and v >= 2.0
        },
        start,
        end,
    )
    lacked = [k for k, v in ref.values.items() if start <= k[2] < end and lacks(k, v)]
    for k in lacked:
        del ref.values[k]
    ref.summed &= {k[2] for k in ref.values}
    assert len(lost) == len(lacked)


def test_a_numbered_ledger_follows_its_table_to_a_renewed_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ledger keyed by a table's series numbers goes on finding its series
    after the tables renew that index (new numbers, the ledger's series first):
    a lower value is still a downward revision, a series gone is still reported
    by its labels, and a new series is new."""
    from openai_cost_pusher import tables as tables_module
    from openai_cost_pusher.model import Columns
    from openai_cost_pusher.tables import SeriesTables

    kept = SeriesTables()

    def labels_of(name: str, number: Hashable) -> Labels:
        return (("project_id", kept.key_of(name, cast(int, number))[0]),)

    ledger = Ledger(labels_of, numbered=True)

    def land(values: dict[str, float], day: int) -> tuple[list[Sample], list[Revision]]:
        index = kept.index(NAME, ledger.series, ledger.renumber)
        table: Columns[tuple[str, str, str]] = Columns(index)
        for project, value in values.items():
            table.add((project, "item", "usd"), day, value)
        keys: list[Hashable] = []
        samples = []
        for key, number, value in table.numbered_at(day):
            keys.append(number)
            samples.append(Sample(NAME, (("project_id", key[0]),), value, day * 1000))
        revisions: list[Revision] = []
        fresh_keys: list[Hashable] = []
        fresh = ledger.diff(samples, revisions, keys, fresh_keys)
        start = day * 1000
        revisions += ledger.commit(
            samples, start, start + DAY_MS, fresh, keys, fresh_keys
        )
        return fresh[0], revisions

    day = D0 // 1000
    for p in "abcdef":
        land({p: 1.0}, day - DAY_MS // 1000)  # six series, gone the day after
    land({"b": 5.0, "c": 7.0, "d": 3.0}, day)
    monkeypatch.setattr(tables_module, "SERIES_SLACK", -(10**9))  # renewed now
    old = kept.series[NAME].index
    fresh, revisions = land({"d": 3.0, "c": 6.0, "z": 1.0}, day)
    assert kept.series[NAME].index is not old  # renewed
    assert [s.labels[0][1] for s in fresh] == ["c", "z"]  # d unchanged, z new
    assert {(r.labels[0][1], r.old, r.new) for r in revisions} == {
        ("c", 7.0, 6.0),
        ("b", 5.0, None),
    }
    assert ledger.totals_between(D0, D0 + DAY_MS) == (3, 10.0)


def test_series_keys_by_number_where_a_project_gains_a_series_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daily metric's index groups its series by project, so a project that
    gains a series after another project was numbered is not in number order
    there: the key of each number, and a renewed index's numbers for the ledger's
    series, still go by number."""
    from openai_cost_pusher import tables as tables_module
    from openai_cost_pusher.model import Columns
    from openai_cost_pusher.tables import SeriesTables

    kept = SeriesTables()
    keys = [("a", "x", "usd"), ("b", "x", "usd"), ("a", "y", "usd"), ("c", "z", "eur")]
    table: Columns[tuple[str, str, str]] = Columns(kept.index(NAME, 0))
    for key in keys:
        table.number(key)
    assert [k[0] for k in table] == ["a", "a", "b", "c"]  # grouped
    assert [kept.key_of(NAME, n) for n in range(len(keys))] == keys
    moved: dict[int, int] = {}

    def renumber(name: str | None, number_of: Callable[[int], int]) -> None:
        assert name == NAME
        for old in (3, 2, 0):  # the ledger's series, in its own order
            moved[old] = number_of(old)

    monkeypatch.setattr(tables_module, "SERIES_SLACK", -(10**9))  # renewed now
    renewed = kept.index(NAME, 0, renumber)
    assert moved == {3: 0, 2: 1, 0: 2}
    assert {key: renewed.get(key) for key in keys} == {
        keys[3]: 0,
        keys[2]: 1,
        keys[0]: 2,
        keys[1]: None,
    }


@pytest.mark.parametrize("mode", ["labels", "keyed", "numbered"])
def test_recording_as_samples_go_holds_what_a_commit_holds(mode: str) -> None:
    """Samples of a day the ledger holds nothing of, recorded as they go on,
    leave the ledger as their commit would; forgetting the day takes them back."""
    by_commit, by_recording = _ledger(mode), _ledger(mode)
    earlier = [_s(lab, 0, 2.0) for lab in _LABELS]
    _commit(by_commit, earlier, *_window(0, 1))
    _commit(by_recording, earlier, *_window(0, 1))
    day = [_s(lab, 1, float(i)) for i, lab in enumerate(_LABELS[:4])]
    assert _commit(by_commit, day, *_window(1, 1)) == []
    keys: list[Hashable] | None = [] if by_recording.keyed else None

    def built() -> Iterator[Sample]:
        for sample in day:  # each key given as its sample is built
            if keys is not None:
                keys.append(_key(by_recording, sample.labels))
            yield sample

    assert list(by_recording.recording(built(), keys)) == day
    for ledger in (by_commit, by_recording):
        assert ledger.held_between(*_window(0, 2)) == len(earlier) + len(day)
        assert ledger.totals_between(*_window(1, 1)) == (4, 6.0)
        assert _diff(ledger, day) == ([], len(day))
        assert ledger.series == len(_LABELS)
    assert by_recording.forget_between(*_window(1, 1)) == len(day)
    assert by_recording.held_between(*_window(1, 1)) == 0
    assert _diff(by_recording, day) == (day, 0)
    assert by_recording.series == len(_LABELS)
