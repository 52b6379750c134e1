"""Render samples as Prometheus text exposition, in chunks of bounded size.

Pure: samples in, bytes out. Each line is `name{k="v",...} value timestamp_ms`, labels
sorted, label values escaped (backslash, newline, double quote), values in the shortest
form that parses back to the same float. Names are checked against the Prometheus
charset, because VictoriaMetrics answers 204 even when it drops a malformed line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import islice
from math import isfinite
from operator import itemgetter

from openai_cost_pusher.model import Labels, Sample

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024


def escape_label_value(value: str) -> str:
    """Escape a label value: `\\` first, then newline, then double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def format_value(value: float) -> str:
    """Return the shortest text that parses back to `value`, or +Inf, -Inf, NaN."""
    text = repr(float(value))
    return _SPECIAL.get(text, text)


def series_prefix(name: str, labels: Labels) -> str:
    """Return `name{k="v",...}` for one series, validating name and label names."""
    # fullmatch: `$` in match() would accept a name ending in a newline
    if not _METRIC_NAME.fullmatch(name):
        msg = f"invalid metric name {name!r}"
        raise ValueError(msg)
    if not labels:
        return name
    parts = []
    for key, value in labels:
        if not _LABEL_NAME.fullmatch(key):
            msg = f"invalid label name {key!r} on {name}"
            raise ValueError(msg)
        parts.append(f'{key}="{escape_label_value(value)}"')
    return name + "{" + ",".join(parts) + "}"


_BATCH = 2048
"""Samples rendered together: enough to amortize the per-batch steps (256 to 8192
measured alike), few enough to keep a batch's text small (about 300 KB)."""
_STAMPS_MAX = 4096
"""Distinct timestamps kept as text; a bucketed backfill has a few hundred at most."""
PREFIXES_MAX = 1 << 16
"""Series whose text a cache keeps whole (about 250 bytes each with its entry): a
backfill of 3,000 projects renders 135,000 series, whose texts would hold some 35 MB
for the whole cycle. Past this many, a series' text is joined from the texts of its
label pairs each time, which are kept whatever the number of series; and once the
series not kept outnumber the renders of kept ones by this many (a data set of more
than about twice as many series, whose days find most texts missing), the cache
lets its texts go (some 20 MiB) and keeps none from then on."""
_stamp = " {}\n".format  # the same text as f" {ts_ms}\n"
_NAME, _LABELS, _VALUE, _TS_MS = map(itemgetter, range(4))  # a `Sample`'s fields


class _Prefixes:
    """The series prefixes of one metric name a `RenderCache` keeps, in the order
    they were first rendered: `ids[n]` is the id of the labels tuple of the `n`-th,
    `texts[n]` its prefix, `at` maps an id to its `n`."""

    __slots__ = ("at", "ids", "texts")

    def __init__(self) -> None:
        self.at: dict[int, int] = {}
        self.ids: list[int] = []
        self.texts: list[str] = []

    def run(self, ids: list[int]) -> list[str] | None:
        """Return the prefixes of `ids` if they are a run of the kept order (from
        the position of the first, going on from the start past the end), else
        None: one lookup and a comparison of the lists, where one lookup per
        sample in a large dict costs its cache misses."""
        first = self.at.get(ids[0])
        if first is None:
            return None
        end = first + len(ids)
        if self.ids[first:end] == ids:
            return self.texts[first:end]
        wrap = end - len(self.ids)
        if wrap > 0 and self.ids[first:] + self.ids[:wrap] == ids:
            return self.texts[first:] + self.texts[:wrap]
        return None


class RenderCache:
    """What `render_chunks` keeps of the series it rendered, and its two ways to
    render samples. A cache passed to several calls (the days of one cycle) builds
    each series' text once; it keeps every labels tuple it saw alive, so it should
    live no longer than those samples would.

    `lines` renders a whole batch column by column: the series prefixes, the values
    (`repr`) and the timestamps (one text per distinct timestamp), interleaved by
    slice assignment and joined once. Where a batch is of one metric (as a day's
    are), each column is taken by `map` over C functions alone (`itemgetter`, `id`,
    a dict's `__getitem__`, `repr`): no Python code runs per sample, and `repr`,
    whose shortest round-trip search is about 1.4 us a value, is most of the cost.
    `line` renders one sample the plain way, for the batches `lines` declines: a
    value that is not a finite number, a timestamp that is not an `int`, a sample
    that raises.

    A series prefix (`name{labels} `) is built once, and found by the metric name,
    then by the identity of the labels tuple, which every sample of a series shares:
    hashing a tuple of label pairs for each sample would cost more than the rest of
    the line. Where a batch's series come in the order they were first rendered (the
    days of a backfill come in the same order), its prefixes are one slice of the
    kept ones (`_Prefixes.run`). `_alive` keeps every tuple seen, so that no id is
    reused by another tuple while the cache lives. At most `PREFIXES_MAX` prefixes
    are kept; the texts of other series are joined from their pairs' texts each
    time.
    """

    __slots__ = (
        "_alive",
        "_found",
        "_keeping",
        "_missed",
        "_names",
        "_pairs",
        "_prefixes",
        "_stamps",
    )

    def __init__(self) -> None:
        self._prefixes: dict[str, _Prefixes] = {}  # by metric name
        self._alive: list[Labels] = []
        self._keeping = True  # false once the texts kept were let go
        self._found = 0  # prefixes found kept
        self._missed = 0  # prefixes built while the cache was full
        self._names: set[str] = set()  # metric names found valid
        self._pairs: dict[tuple[str, str], str] = {}  # valid label pair -> k="v"
        self._stamps: dict[int, str] = {}  # ts_ms -> " ts_ms\n"

    def prefix(self, name: str, labels: Labels) -> str:
        """Return `name{labels} ` with its trailing space, building it if new."""
        kept = self._prefixes.get(name)
        if kept is None:
            kept = self._prefixes[name] = _Prefixes()
        key = id(labels)
        at = kept.at.get(key)
        if at is not None:
            self._found += 1
            return kept.texts[at]
        prefix = self._build(name, labels)
        if not self._keeping:
            return prefix
        if len(self._alive) < PREFIXES_MAX:
            kept.at[key] = len(kept.ids)
            kept.ids.append(key)
            kept.texts.append(prefix)
            self._alive.append(labels)
        else:
            self._missed += 1
            if self._missed > self._found + PREFIXES_MAX:
                self._let_go()
        return prefix

    @property
    def kept(self) -> int:
        """How many series' texts the cache keeps."""
        return len(self._alive)

    def _let_go(self) -> None:
        """Let every kept text go and keep none from now on: the series are so
        many more than the cache holds that it costs more memory than it saves
        work (the pairs' texts, few, stay)."""
        self._keeping = False
        self._prefixes.clear()
        self._alive.clear()

    def _build(self, name: str, labels: Labels) -> str:
        """Return `series_prefix(name, labels) + " "`, joining the texts of label
        pairs seen in earlier series where it can: a pair (`currency="usd"`, a
        project) recurs in many series, and validating and escaping it costs more
        than joining."""
        pairs = self._pairs
        if name in self._names:
            try:
                texts = [pairs[pair] for pair in labels]
            except (KeyError, TypeError):  # a pair not seen, or not a hashable pair
                pass
            else:
                return name + "{" + ",".join(texts) + "} " if texts else name + " "
        prefix = series_prefix(name, labels) + " "  # validates, raising as ever
        # encode() refuses what UTF-8 cannot carry (lone surrogates) here, at the
        # sample that brings it, as rendering line by line would
        prefix.encode()
        self._names.add(name)
        for key, value in labels:
            pairs[key, value] = f'{key}="{escape_label_value(value)}"'
        return prefix

    def line(self, sample: Sample, timestamps: bool) -> str:
        """Return one sample's line: any value, any timestamp, raising where it must."""
        prefix = self.prefix(sample.name, sample.labels)
        text = repr(sample.value)  # floats by contract; an int renders as itself
        value = _SPECIAL.get(text, text)
        if timestamps:
            return f"{prefix}{value} {sample.ts_ms}\n"
        return f"{prefix}{value}\n"

    def lines(self, batch: list[Sample], timestamps: bool) -> str | None:
        """Return the lines of `batch` as one string, or None if they must be
        rendered one by one (NaN and the infinities are spelled Prometheus' way
        there, and an error is raised at its sample)."""
        try:
            values = list(map(_VALUE, batch))
            if not isfinite(sum(values)):
                return None
            stamps = None
            if timestamps:
                stamps = self._stamp_texts(list(map(_TS_MS, batch)))
                if stamps is None:
                    return None
            names = list(map(_NAME, batch))
            kept = self._prefixes.get(names[0])
            try:
                if kept is None or names.count(names[0]) != len(names):
                    raise KeyError(names[0])  # a new metric, or several
                # by C calls alone: the labels of each sample, their id, its prefix
                ids = list(map(id, map(_LABELS, batch)))
                prefixes = kept.run(ids)
                if prefixes is None:
                    prefixes = list(
                        map(kept.texts.__getitem__, map(kept.at.__getitem__, ids))
                    )
                self._found += len(ids)
            except KeyError:  # a series not seen before (or not kept)
                prefix = self.prefix
                prefixes = [prefix(s.name, s.labels) for s in batch]
            pieces = ["\n"] * (3 * len(batch))  # the newlines stay without timestamps
            pieces[0::3] = prefixes
            pieces[1::3] = map(repr, values)
            if stamps is not None:
                pieces[2::3] = stamps
            return "".join(pieces)
        except Exception:  # rendered again one by one, raising in place
            return None

    def _stamp_texts(self, stamps: list[int]) -> list[str] | None:
        """Return `" ts_ms\n"` for each timestamp, from the cache where it can; None
        unless all are `int` (a float or bool equal to a cached int would take that
        int's text, and what another type prints is its own affair)."""
        if list(map(type, stamps)).count(int) != len(stamps):
            return None
        cache = self._stamps
        first = stamps[0]
        if stamps.count(first) == len(stamps):  # one bucket: the common case
            text = cache.get(first)
            if text is None:
                if len(cache) >= _STAMPS_MAX:
                    cache.clear()
                text = cache[first] = _stamp(first)
            return [text] * len(stamps)
        new = set(stamps).difference(cache)
        if len(new) > len(stamps) // 4:  # mostly distinct: not worth keeping
            return list(map(_stamp, stamps))
        if len(cache) + len(new) > _STAMPS_MAX:
            cache.clear()
        for ts in new:
            cache[ts] = _stamp(ts)
        return list(map(cache.__getitem__, stamps))


def _batches(samples: Iterable[Sample]) -> Iterator[list[Sample]]:
    """Yield `samples` in lists of `_BATCH` (the last one shorter)."""
    if type(samples) is list:  # slices: no iterator to step through
        start = 0
        while start < len(samples):
            yield samples[start : start + _BATCH]
            start += _BATCH
        return
    source = iter(samples)
    while batch := list(islice(source, _BATCH)):
        yield batch


def render_chunks(
    samples: Iterable[Sample],
    max_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    timestamps: bool = True,
    cache: RenderCache | None = None,
) -> Iterator[bytes]:
    """Yield the exposition in pieces of about `max_bytes` or less, whole lines only.

    A chunk ends with the first line that brings it to `max_bytes` UTF-8 bytes or
    more. Without `timestamps` (for a scrape endpoint) lines end after the value.

    Samples are taken in batches (see `RenderCache`); a batch rendered as a whole is
    encoded once and cut at the newline that reaches the cap (a line holds no other
    newline: label values escape theirs). A batch rendered line by line yields each
    chunk as it fills, so an invalid sample raises only after every chunk before it
    has been yielded, as a plain loop over the samples would.
    """
    renderer = RenderCache() if cache is None else cache
    parts: list[bytes] = []
    size = 0
    for batch in _batches(samples):
        text = renderer.lines(batch, timestamps)
        if text is None:
            for sample in batch:
                line = renderer.line(sample, timestamps).encode()
                parts.append(line)
                size += len(line)
                if size >= max_bytes:
                    yield b"".join(parts)
                    parts, size = [], 0
            continue
        data = text.encode()
        start = 0
        while start < len(data) and size + len(data) - start >= max_bytes:
            # the line that reaches the cap ends at the first newline from here
            end = data.index(b"\n", start + max(max_bytes - size, 1) - 1) + 1
            parts.append(data[start:end])
            yield b"".join(parts)
            parts, size, start = [], 0, end
        if start < len(data):
            parts.append(data[start:] if start else data)
            size += len(data) - start
    if parts:
        yield b"".join(parts)


def render_lines(
    samples: Iterable[Sample], *, timestamps: bool = True
) -> Iterator[str]:
    """Yield one exposition line (with its newline) per sample."""
    for chunk in render_chunks(samples, 1, timestamps=timestamps):
        yield chunk.decode()


def render(samples: Iterable[Sample], *, timestamps: bool = True) -> bytes:
    """Return the whole exposition of `samples` as UTF-8 bytes."""
    return b"".join(render_chunks(samples, timestamps=timestamps))
