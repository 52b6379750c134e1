"""`DayFeed`: buckets taken from their streams a day at a time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openai_cost_pusher.feed import DayFeed
from openai_cost_pusher.model import BucketParts, CostLine

DAY = 86_400

Bucket = BucketParts[CostLine]


def _stream(log: list[str], name: str, *days: int) -> Iterator[Bucket]:
    """Yield a bucket per day, logging each one as the stream reads it."""
    for day in days:
        log.append(f"{name} read {day}")
        yield BucketParts(day * DAY, [], ())
    log.append(f"{name} ended")


def _feed(
    log: list[str], *streams: Iterator[Bucket]
) -> tuple[DayFeed[Bucket], list[tuple[int, int]]]:
    added: list[tuple[int, int]] = []
    return DayFeed(list(streams), lambda i, b: added.append((i, b.start // DAY))), added


def test_upto_takes_each_stream_until_it_has_moved_past_the_end() -> None:
    """Each stream is read until it hands on a bucket at `end` or later (added too,
    as read) or ends; a stream already past `end` is not read."""
    log: list[str] = []
    feed, added = _feed(log, _stream(log, "a", 0, 1, 3), _stream(log, "b", 2, 3))
    feed.upto(1 * DAY)
    assert added == [(0, 0), (0, 1), (1, 2)]
    assert log == ["a read 0", "a read 1", "b read 2"]
    feed.upto(2 * DAY)  # a stands at day 1 and reads on; b, at day 2, does not
    assert added == [(0, 0), (0, 1), (1, 2), (0, 3)]
    feed.upto(3 * DAY)  # now b (at day 2) reads on, a (at day 3) does not
    assert added[-1] == (1, 3)
    feed.upto(3 * DAY)  # both stand at day 3: nothing is read
    assert len(added) == 5
    feed.drain()
    assert log[-2:] == ["a ended", "b ended"]
    assert len(added) == 5


def test_an_empty_stream_ends_at_once_and_others_go_on() -> None:
    log: list[str] = []
    feed, added = _feed(log, _stream(log, "a"), _stream(log, "b", 5))
    feed.upto(DAY)
    assert log == ["a ended", "b read 5"]
    assert added == [(1, 5)]


def test_close_closes_only_the_streams_not_ended() -> None:
    """A feed let go early closes the answers still open (their `finally` runs),
    once; streams that ended are left alone."""
    closed: list[str] = []

    def stream(name: str, *days: int) -> Iterator[Bucket]:
        try:
            for day in days:
                yield BucketParts(day * DAY, [], ())
        finally:
            closed.append(name)

    feed, _ = _feed([], stream("open", 0, 1, 2), stream("ended"))
    feed.upto(DAY)
    assert closed == ["ended"]
    feed.close()
    assert closed == ["ended", "open"]
    feed.close()
    assert closed == ["ended", "open"]


def test_done_is_called_once_drained_never_after_a_failure_or_a_skip() -> None:
    """`drain` calls `done` once every stream has ended; a stream that fails while
    draining closes the others and raises, without `done`; `skip_rest` reads to
    the end without adding or calling it."""
    closed: list[str] = []

    def stream(name: str, *days: int, fail: bool = False) -> Iterator[Bucket]:
        try:
            for day in days:
                yield BucketParts(day * DAY, [], ())
            if fail:
                raise ValueError(name)
        finally:
            closed.append(name)

    calls: list[str] = []
    added: list[int] = []
    feed = DayFeed(
        [stream("a", 0, 1), stream("b", 0)],
        lambda i, b: added.append(i),
        lambda: calls.append("done"),
    )
    feed.upto(DAY)
    assert calls == []
    feed.drain()
    assert calls == ["done"] and sorted(closed) == ["a", "b"]

    closed.clear()
    failing = DayFeed(
        [stream("bad", 0, 1, fail=True), stream("open", 0, 1, 2)],
        lambda i, b: None,
        lambda: calls.append("done"),
    )
    failing.upto(DAY)
    with pytest.raises(ValueError, match=r"^bad$"):
        failing.drain()
    assert calls == ["done"] and sorted(closed) == ["bad", "open"]

    added.clear()
    skipped = DayFeed(
        [stream("c", 0, 1, 2)], lambda i, b: added.append(i), lambda: calls.append("x")
    )
    skipped.upto(DAY)
    skipped.skip_rest()
    assert added == [0, 0] and calls == ["done"]
