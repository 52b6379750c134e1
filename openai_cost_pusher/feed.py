"""Buckets taken from their streams a day at a time, so that a day lands as soon as
every stream has moved past it, and no data set's window is held whole.

A data set's days come from one streamed answer (the costs) or from one per endpoint
(the usage: a day needs every endpoint's buckets of that day). `DayFeed` holds one
iterator of buckets per stream and adds each bucket to the caller's table as it is
taken; `upto(end)` takes from each stream until its next bucket starts at `end` or
later, or it has ended: every bucket before `end` has then been added, since a stream
hands its buckets in time order (`openai_api` refuses an answer that does not). The
streams are read side by side, each one's answer held open while the days before
land; the time a stream waits for its reader does not count against its deadline
(`transport.paused`).

Pure: no I/O of its own, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from openai_cost_pusher.model import BucketParts

P = TypeVar("P", bound=BucketParts[Any])

_DONE = 1 << 62
"""Past any bucket: where a stream that has ended stands."""


def _skip(i: int, bucket: object) -> None:
    """Add nothing (`DayFeed.skip_rest`)."""


def _nothing() -> None:
    pass


class DayFeed(Generic[P]):
    """Streams of buckets, each in time order, added to a table as they are taken."""

    __slots__ = ("_add", "_at", "_done", "_streams")

    def __init__(
        self,
        streams: Sequence[Iterator[P]],
        add: Callable[[int, P], None],
        done: Callable[[], None] = _nothing,
    ) -> None:
        """`add(i, bucket)` adds a bucket of stream `i` (its place in `streams`);
        `done()` is called once `drain` has taken every stream to its end."""
        self._streams = list(streams)
        self._add = add
        self._done = done
        # per stream: the start of the last bucket taken (-1: none yet)
        self._at = [-1] * len(self._streams)

    def upto(self, end: int) -> None:
        """Take and add each stream's buckets until one starts at `end` (seconds) or
        later, or the stream ends: every bucket before `end` is then added."""
        for i, stream in enumerate(self._streams):
            while self._at[i] < end:
                bucket = next(stream, None)
                if bucket is None:
                    self._at[i] = _DONE
                    break
                self._at[i] = bucket.start
                self._add(i, bucket)
                del bucket  # not held while the next one is decoded

    def drain(self) -> None:
        """Take every stream to its end, then call `done`; where a stream fails,
        close the others and raise."""
        try:
            self.upto(_DONE)
        except BaseException:
            self.close()
            raise
        self._done()

    def skip_rest(self) -> None:
        """Read every stream to its end without adding its buckets: what raises
        for a bad answer (buckets out of order, say) still raises."""
        self._add = _skip
        self.upto(_DONE)

    def close(self) -> None:
        """Close the streams not taken to their end (their answers are let go)."""
        for i, stream in enumerate(self._streams):
            if self._at[i] != _DONE:
                close = getattr(stream, "close", None)
                if callable(close):
                    close()
                self._at[i] = _DONE
