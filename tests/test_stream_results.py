"""A bucket's results streamed in batches: the same lines and errors as the bucket
decoded whole, however the page is cut, with memory bounded by a batch."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher import jsonstream
from openai_cost_pusher.errors import BadResponse
from openai_cost_pusher.jsonstream import (
    MAX_DEPTH,
    MAX_WINDOW,
    Items,
    LimitExceeded,
    Member,
    StreamError,
    stream_parts,
)
from openai_cost_pusher.model import CostLine
from openai_cost_pusher.openai_api import _read_bucket
from openai_cost_pusher.parsers import (
    DAY,
    BadResult,
    BucketReader,
    CostBucket,
    UsageBucket,
    parse_cost_bucket,
    parse_usage_bucket,
    utf8,
)
from tests.fake_openai import live_cost_result

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
COSTS = "organization.costs.result"
COMPLETIONS = "organization.usage.completions.result"

Outcome = tuple[Any, ...]
"""("ok", start, lines) or ("bad", exception type, message), per bucket."""


def _chunks(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _streamed(
    chunks: Iterable[bytes],
    reader: Callable[[str], BucketReader[Any]],
    **limits: Any,
) -> list[Outcome]:
    """Read a page as `_decode_page` does: each bucket's parts to a fresh reader."""
    parts = stream_parts(chunks, "data", "results", lambda k, v: None, **limits)
    outcomes: list[Outcome] = []
    while True:
        bucket = reader(f"w: data[{len(outcomes)}]")
        if not _read_bucket(parts, bucket):
            return outcomes
        outcomes.append(_outcome(bucket.finish))


def _whole(body: bytes, parse: Callable[[Any, str], Any]) -> list[Outcome]:
    """Read the same page with json.loads and the whole-bucket parser."""
    data = json.loads(body)["data"]
    return [
        _outcome(functools.partial(parse, bucket, f"w: data[{i}]"))
        for i, bucket in enumerate(data)
    ]


def _outcome(finish: Callable[[], tuple[int, list[Any]]]) -> Outcome:
    try:
        start, lines = finish()
    except BadResponse as exc:
        return ("bad", type(exc), str(exc))
    return ("ok", start, lines)


def _obj(pairs: Iterable[tuple[str, Any]]) -> str:
    """Return a JSON object of `pairs` in their order, repeated keys included."""
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


def _page(buckets: Iterable[str], pretty: bool = False) -> bytes:
    gap = ",\n  " if pretty else ", "
    return ('{"object": "page", "data": [' + gap.join(buckets) + "]}").encode()


# ------------------------------------------------------------------ strategies

TEXT = st.text(
    alphabet=st.sampled_from([*'ab_-, "\\[]{}:', "é", "✓", "\ud800"]), max_size=8
)
"""Strings with what the scan must not take for structure, and a lone surrogate."""

AMOUNTS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["12.50", "0.17391500000000000", " 3 ", "abc", "", True, None]),
)


@st.composite
def _cost_result(draw: st.DrawFn) -> Any:
    """A cost result: mostly well formed, sometimes not (a bad value, no object)."""
    kind = draw(st.integers(min_value=0, max_value=39))
    if kind == 0:
        return draw(st.sampled_from([5, "x", None, [1, {"a": []}], {}]))
    result: dict[str, Any] = {"object": COSTS if kind != 1 else "other"}
    if kind != 2:
        amount: dict[str, Any] = {"value": draw(AMOUNTS) if kind == 3 else 0.5}
        if kind != 4:
            amount["currency"] = draw(st.sampled_from(["usd", "eur", "é", ""]))
        if kind < 6:
            amount["value"] = draw(AMOUNTS)
        else:
            amount["value"] = draw(st.floats(min_value=0, max_value=1e6))
        result["amount"] = amount
    for key in ("project_id", "line_item", "quantity_unit", "api_key_id"):
        if draw(st.booleans()):
            result[key] = draw(st.none() | TEXT) if kind < 8 else draw(TEXT)
    if draw(st.booleans()):
        result["quantity"] = draw(AMOUNTS) if kind < 8 else 1234.0
    if draw(st.booleans()):
        result["organization_id"] = "org-0123456789abcdefghijklm"
    return result


@st.composite
def _bucket(draw: st.DrawFn, result: st.SearchStrategy[Any], step: int) -> str:
    """A bucket as JSON text: its keys in any order, `start_time` or `results`
    repeated or missing at times, sometimes no object at all."""
    if draw(st.integers(min_value=0, max_value=30)) == 0:
        return json.dumps(draw(st.sampled_from([3, "x", None, [], [{"a": 1}]])))
    start = T0 + step * draw(st.integers(min_value=0, max_value=5))
    pairs: list[tuple[str, Any]] = [
        ("object", "bucket"),
        ("start_time", start),
        ("end_time", start + step),
        ("results", draw(st.lists(result, max_size=12))),
    ]
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        bad = draw(st.sampled_from([start + 1, "x", None, True, 1.5]))
        pairs.append(("start_time", bad))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        pairs.append(("results", draw(st.sampled_from([5, {}, []]))))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        pairs.append(("results", draw(st.lists(result, max_size=5))))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        pairs.append(("start_time", start + step))  # a repeat: the last counts
    if draw(st.integers(min_value=0, max_value=15)) == 0:
        del pairs[draw(st.integers(min_value=0, max_value=len(pairs) - 1))]
    pairs.append(("x", draw(st.none() | TEXT)))
    return _obj(draw(st.permutations(pairs)))


WINDOWS = st.tuples(
    st.integers(min_value=1, max_value=64),
    st.sampled_from([1, 5, 64, 1024, 64 * 1024]),
)


@settings(max_examples=400, deadline=None)
@given(
    buckets=st.lists(_bucket(_cost_result(), DAY), max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
    batch=st.integers(min_value=0, max_value=3000),
    windows=WINDOWS,
    pretty=st.booleans(),
)
def test_streamed_cost_buckets_equal_whole_ones(
    buckets: list[str],
    cuts: list[int],
    batch: int,
    windows: tuple[int, int],
    pretty: bool,
) -> None:
    """For any page and any chunking, batch size and scan window, each bucket
    streamed batch by batch gives exactly the lines (or the error, with its path
    counted in the whole bucket) that json.loads and `parse_cost_bucket` give:
    results before `start_time`, repeated keys, empty results, a bad result
    anywhere, a bad envelope."""
    body = _page(buckets, pretty)
    first, largest = windows
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonstream, "FIRST_WINDOW", first)
        patch.setattr(jsonstream, "MAX_WINDOW", max(first, largest))
        streamed = _streamed(
            _chunks(body, cuts), lambda w: CostBucket(w), batch_bytes=batch
        )
    assert streamed == _whole(body, parse_cost_bucket)


@st.composite
def _usage_result(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(min_value=0, max_value=9))
    if kind == 0:
        return draw(st.sampled_from([5, "x", None, {}]))
    result: dict[str, Any] = {
        "object": COMPLETIONS if kind != 1 else "x",
        "input_tokens": draw(st.integers(min_value=0, max_value=10**6)),
        "output_tokens": 1 if kind != 2 else draw(AMOUNTS),
        "num_model_requests": 1,
        "project_id": draw(st.none() | TEXT),
        "model": "gpt-4o" if kind != 3 else draw(st.integers() | TEXT),
        "batch": draw(st.booleans() | st.none()),
    }
    if draw(st.booleans()):
        result["input_cached_tokens"] = draw(st.integers(min_value=0, max_value=9))
    return result


@settings(max_examples=200, deadline=None)
@given(
    buckets=st.lists(_bucket(_usage_result(), 3600), max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
    batch=st.integers(min_value=0, max_value=3000),
)
def test_streamed_usage_buckets_equal_whole_ones(
    buckets: list[str], cuts: list[int], batch: int
) -> None:
    """The usage reader streams the same way as the costs reader."""
    body = _page(buckets)
    streamed = _streamed(
        _chunks(body, cuts),
        lambda w: UsageBucket(w, "completions", 3600),
        batch_bytes=batch,
    )
    expected = _whole(body, lambda b, w: parse_usage_bucket(b, w, "completions", 3600))
    assert streamed == expected


TRICKY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value, with strings full of what the scan must not take for structure."""


def _rebuilt(parts: Iterable[Any]) -> list[Any]:
    """Return the `data` elements that `stream_parts`' parts stand for."""
    elements: list[Any] = []
    current: dict[str, Any] = {}
    for part in parts:
        if isinstance(part, jsonstream.Whole):
            elements.append(part.value)
        elif isinstance(part, Member):
            current[part.key] = part.value
        elif isinstance(part, Items):
            if part.first:
                current["results"] = []
            current["results"] += part.values
        else:
            elements.append(current)
            current = {}
    return elements


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.dictionaries(TEXT, TRICKY, max_size=3).map(lambda d: d.items())
        | TRICKY.map(lambda v: [("results", v)]),
        max_size=4,
    ),
    results=st.lists(st.lists(TRICKY, max_size=8), min_size=4, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=16),
    batch=st.integers(min_value=0, max_value=200),
    windows=WINDOWS,
    ascii_only=st.booleans(),
)
def test_parts_stand_for_the_page_however_cut(
    data: list[Any],
    results: list[list[Any]],
    cuts: list[int],
    batch: int,
    windows: tuple[int, int],
    ascii_only: bool,
) -> None:
    """Whatever the elements and their results hold, however the body, the batches
    and the scan windows are cut, the parts give back what json.loads gives, each
    nested element once, in order."""
    elements = [
        {**dict(pairs), "results": r} if i % 2 else {"results": r, **dict(pairs)}
        for i, (pairs, r) in enumerate(zip(data, results, strict=False))
    ]
    text = json.dumps({"object": "page", "data": elements}, ensure_ascii=ascii_only)
    if utf8(text) != text:  # a lone surrogate: not UTF-8
        text = json.dumps({"object": "page", "data": elements})
    body = text.encode()
    first, largest = windows
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonstream, "FIRST_WINDOW", first)
        patch.setattr(jsonstream, "MAX_WINDOW", max(first, largest))
        parts = stream_parts(
            _chunks(body, cuts), "data", "results", lambda k, v: None, batch_bytes=batch
        )
        assert _rebuilt(parts) == json.loads(body)["data"]


# ---------------------------------------------------------------- the examples


_result = live_cost_result


def _line(k: int, day: int = T0) -> CostLine:
    return CostLine(
        day,
        f"proj_{k // 20:05d}",
        f"model-{k % 20}, input",
        "usd",
        0.17391500000000001 + k,
        12345678.0,
        "tokens",
        "",
    )


def _day_page(results: list[Any], start: int = T0, first: str = "start_time") -> bytes:
    pairs = [("object", "bucket"), ("start_time", start), ("results", results)]
    if first == "results":
        pairs.reverse()
    return _page([_obj(pairs)])


def _batches(chunks: Iterable[bytes], **limits: Any) -> list[int]:
    """Return the sizes of the results batches of a one-bucket page."""
    parts = stream_parts(chunks, "data", "results", lambda k, v: None, **limits)
    return [len(p.values) for p in parts if isinstance(p, Items)]


def test_results_before_the_start_time_get_the_day() -> None:
    """Results that come before `start_time` (JSON objects are unordered) are
    built, and restamped with the day once it is known."""
    results = [_result(k) for k in range(300)]
    body = _day_page(results, T0 + 3 * DAY, first="results")
    assert len(_batches([body], batch_bytes=4096)) > 10
    streamed = _streamed(_every(body, 1000), CostBucket, batch_bytes=4096)
    lines = [_line(k, T0 + 3 * DAY) for k in range(300)]
    assert streamed == [("ok", T0 + 3 * DAY, lines)]


def test_the_last_of_repeated_keys_counts() -> None:
    """As json.loads does: the last `start_time` and the last `results` count."""
    bucket = _obj(
        [
            ("results", [_result(k) for k in range(50)]),
            ("start_time", T0),
            ("results", [_result(k) for k in range(50, 60)]),
            ("start_time", T0 + DAY),
        ]
    )
    streamed = _streamed([_page([bucket])], CostBucket, batch_bytes=500)
    lines = [_line(k, T0 + DAY) for k in range(50, 60)]
    assert streamed == [("ok", T0 + DAY, lines)]


@pytest.mark.parametrize("bad", [0, 1, 377, 999])
def test_a_bad_result_in_a_later_batch_names_its_index_in_the_bucket(bad: int) -> None:
    """The whole bucket is withheld, and the path counts results from the
    bucket's first, not from the batch's."""
    results = [_result(k) for k in range(1000)]
    results[bad]["amount"]["value"] = "abc"
    body = _day_page(results)
    assert len(_batches([body], batch_bytes=8192)) > 20
    (outcome,) = _streamed(_every(body, 5000), CostBucket, batch_bytes=8192)
    assert outcome == (
        "bad",
        BadResult,
        f"w: data[0].results[{bad}].amount.value: expected a number or a decimal "
        "string, got 'abc'",
    )


def test_an_empty_results_array_is_a_bucket_without_lines() -> None:
    """`"results": []` (and `[ ]`) is well formed: the day, no lines."""
    body = _page(
        [
            f'{{"start_time": {T0}, "results": []}}',
            f'{{"results": [ ], "start_time": {T0 + DAY}}}',
        ]
    )
    assert _batches([body]) == [0, 0]
    assert _streamed([body], CostBucket) == [("ok", T0, []), ("ok", T0 + DAY, [])]


# ---------------------------------------------------------------- memory bound


class _CountingDecoder(json.JSONDecoder):
    """A JSONDecoder that records the length of every text it decodes."""

    sizes: ClassVar[list[int]] = []

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        self.sizes.append(len(s))
        return super().decode(s, *args, **kwargs)


def test_a_decoder_call_never_sees_more_than_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A day of 6,000 results (1.7 MiB) is decoded in calls of at most the batch
    size each, every result once: not as one value."""
    monkeypatch.setattr(json, "JSONDecoder", _CountingDecoder)
    _CountingDecoder.sizes = []
    results = [_result(k) for k in range(6000)]
    body = _day_page(results)
    batch = 64 * 1024
    streamed = _streamed(_every(body, 256 * 1024), CostBucket, batch_bytes=batch)
    assert streamed == [("ok", T0, [_line(k) for k in range(6000)])]
    big = [size for size in _CountingDecoder.sizes if size > 1000]
    assert max(big) <= batch + 4  # the brackets (and the `0 `) around a batch
    assert sum(big) >= len(body) - 1000  # every result decoded, once
    assert len(big) == pytest.approx(len(body) / batch, abs=2)


def test_a_result_longer_than_a_batch_is_its_own_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A result longer than the batch size is decoded with at most one scan
    window of others; the batches around it keep to the size."""
    monkeypatch.setattr(json, "JSONDecoder", _CountingDecoder)
    _CountingDecoder.sizes = []
    results = [_result(k) for k in range(2000)]
    results[1000]["padding"] = "x" * 200_000
    body = _day_page(results)
    streamed = _streamed(_every(body, 50_000), CostBucket, batch_bytes=16_384)
    assert streamed == [("ok", T0, [_line(k) for k in range(2000)])]
    sizes = sorted(_CountingDecoder.sizes)
    assert 200_000 < sizes[-1] <= 200_400 + 16_384 + MAX_WINDOW
    assert sizes[-2] <= 16_384 + 4


def test_batches_are_handed_on_before_the_bucket_has_arrived() -> None:
    """The parser gets the first results of a day once a batch of them has been
    read, long before the rest of the day: the bucket is never held whole."""
    results = [_result(k) for k in range(20_000)]  # 5.6 MiB
    body = _day_page(results)
    read = 0

    def chunks() -> Iterator[bytes]:
        nonlocal read
        for chunk in _every(body, 64 * 1024):
            read += len(chunk)
            yield chunk

    at_batches: list[int] = []

    class Watch(CostBucket):
        def results(self, batch: list[Any], first: bool, digest: bytes = b"") -> None:
            at_batches.append(read)
            super().results(batch, first, digest)

    batch = 256 * 1024
    streamed = _streamed(chunks(), Watch, batch_bytes=batch)
    assert streamed == [("ok", T0, [_line(k) for k in range(20_000)])]
    assert at_batches[0] <= batch + 64 * 1024
    assert len(at_batches) >= len(body) // batch
    assert all(b - a <= batch + 64 * 1024 for a, b in itertools.pairwise(at_batches))


# ---------------------------------------------------------------------- limits


def _results_body(results: list[str]) -> bytes:
    return (
        '{"data": [{"start_time": 0, "results": [' + ", ".join(results)
    ).encode() + (b']}], "has_more": false}')


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("at", [0, 1, 5])
@pytest.mark.parametrize(
    "long",
    [
        '{"a": "' + "x" * 200 + '"}',
        '"' + "x" * 200 + '"',
        "1" * 200,
        "[" + "1," * 99 + "1]",
    ],
    ids=["object", "string", "number", "array"],
)
def test_one_result_past_the_cap_is_refused(chunk: int, at: int, long: str) -> None:
    """A single result longer than `max_value_chars`, first or later, is refused
    however the body is cut."""
    results = ['{"a": 1}'] * 6
    results[at] = long
    body = _results_body(results)
    with pytest.raises(LimitExceeded, match="longer than 100 characters"):
        _batches(_every(body, chunk), max_value_chars=100, batch_bytes=50)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_many_small_results_past_the_cap_are_accepted(chunk: int) -> None:
    """The cap is per result: a bucket of 1,000 results, 50 times the cap, is
    read, however the body and the batches are cut."""
    results = [{"i": i, "s": "é" * (i % 30)} for i in range(1000)]
    body = _results_body([json.dumps(r, ensure_ascii=False) for r in results])
    parts = stream_parts(
        _every(body, chunk),
        "data",
        "results",
        lambda k, v: None,
        max_value_chars=100,
        batch_bytes=700,
    )
    got = [r for p in parts if isinstance(p, Items) for r in p.values]
    assert got == results
    assert len(body) > 50 * 100


@pytest.mark.parametrize("size", [98, 99])
def test_the_first_result_may_take_the_whole_cap(size: int) -> None:
    """The first result counts alone: 100 characters pass a cap of 100, 101 not."""
    body = _results_body(['"' + "é" * size + '"'])  # with its quotes
    if size == 98:
        assert _batches(_every(body, 3), max_value_chars=100) == [1]
    else:
        with pytest.raises(LimitExceeded):
            _batches(_every(body, 3), max_value_chars=100)


LATER = {
    "middle": ('{"s": "' + "é" * 89 + '"}', True),
    "ascii": ('{"s": "' + "x" * 89 + '"}', True),
    "last": ('{"s": "' + "é" * 89 + '"}', False),
    "array": ('["' + "é" * 94 + '"]', False),
    "string": ('"' + "é" * 96 + '"', False),
    "number": ("1" * 98, False),
}
"""Results of 98 characters: 100 with the `, ` before them."""


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 20])
@pytest.mark.parametrize("batch", [0, 50, 1 << 20])
@pytest.mark.parametrize("extra", [0, 1])
@pytest.mark.parametrize("kind", sorted(LATER))
def test_a_later_result_takes_the_cap_with_its_comma(
    chunk: int, batch: int, extra: int, kind: str
) -> None:
    """After the first, a result counts with the `, ` before it: 100 characters
    pass a cap of 100 and 101 do not, however the body and the batches are cut."""
    text, middle = LATER[kind]
    if extra:
        fill = next(c for c in "éx1" if c in text)
        text = text.replace(fill, fill * 2, 1)
    results = ['{"a": 1}', text, '{"b": 2}'] if middle else ['{"a": 1}', text]
    body = _results_body(results)
    chunks = _every(body, chunk)
    if extra:
        with pytest.raises(LimitExceeded, match="longer than 100 characters"):
            _batches(chunks, max_value_chars=100, batch_bytes=batch)
    else:
        sizes = _batches(chunks, max_value_chars=100, batch_bytes=batch)
        assert sum(sizes) == len(results)


@pytest.mark.parametrize(
    ("depth", "ok"), [(MAX_DEPTH - 4, True), (MAX_DEPTH - 3, False)]
)
@pytest.mark.parametrize("window", [1, 4, 1024])
def test_results_nest_to_the_limit_counted_from_the_top(
    monkeypatch: pytest.MonkeyPatch, depth: int, ok: bool, window: int
) -> None:
    """A result sits 4 levels down (page, data, bucket, results): it may nest 60
    levels itself, with brackets in its strings."""
    monkeypatch.setattr(jsonstream, "FIRST_WINDOW", window)
    monkeypatch.setattr(jsonstream, "MAX_WINDOW", window)
    deep: Any = {"s": "[[{{"}
    for _ in range(depth - 1):
        deep = [deep, "]]}"]
    body = _results_body(['{"a": 1}', json.dumps(deep), '{"b": 2}'])
    if ok:
        assert sum(_batches([body], batch_bytes=10)) == 3
    else:
        with pytest.raises(LimitExceeded, match="nests deeper than 64 levels"):
            _batches([body], batch_bytes=10)


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize(
    "results",
    [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b"{}, " + b'{"a": [' * 50_000],
    ids=["open", "closed", "later"],
)
def test_deep_results_are_refused_however_cut(chunk: int, results: bytes) -> None:
    """100,000 brackets in a results array give LimitExceeded, never RecursionError."""
    body = b'{"data": [{"start_time": 0, "results": [' + results + b"]}]}"
    with pytest.raises(LimitExceeded, match="nests deeper than 64 levels"):
        _batches(_every(body, chunk), batch_bytes=100)


@pytest.mark.parametrize("batch", [0, 1, 9, 1 << 20])
@pytest.mark.parametrize(
    "results",
    [
        '{"a": 1}.5, {"b": 2}',
        '{"a": 1}e5, {"b": 2}',
        '{"a": 1} {"b": 2}',
        '{"a": 1}, ',
        ', {"a": 1}',
        '{"a": 1},, {"b": 2}',
        '{"a": 1}, NaN',
        '{"a": -Infinity}',
        '{"a": 1}, {"b": "\xff"}',
        '{"a": 1}]',
        '{"a": 1}}, "x": 5',
        '{"a": 1}, 2}, "x": 5',
    ],
)
def test_malformed_results_raise_wherever_a_batch_is_cut(
    batch: int, results: str
) -> None:
    """Text between or after results is checked as strictly as anywhere: junk
    right after a batch's cut, a missing or extra comma, NaN, bytes not UTF-8."""
    body = (
        b'{"data": [{"start_time": 0, "results": ['
        + results.encode("latin-1")
        + b"]}]}"
    )
    for chunk in (1, 5, len(body)):
        with pytest.raises(StreamError):
            _batches(_every(body, chunk), batch_bytes=batch)


@pytest.mark.parametrize("cut", [10, 60, 200])
def test_a_page_that_ends_inside_the_results_raises(cut: int) -> None:
    """A body broken off inside a bucket's results is an error, not a short day."""
    body = _results_body([json.dumps(_result(k)) for k in range(5)])
    with pytest.raises(StreamError):
        _batches([body[: len(body) - cut]], batch_bytes=100)


def test_other_keys_of_a_bucket_are_members() -> None:
    """Every other key of a bucket comes whole, in order, results not an array
    too; elements of `data` that are not objects come whole."""
    body = _page(['{"a": [1, {"b": 2}], "results": 5, "c": "x"}', "[7]", "{}"])
    parts = list(stream_parts([body], "data", "results", lambda k, v: None))
    assert parts == [
        Member("a", [1, {"b": 2}]),
        Member("results", 5),
        Member("c", "x"),
        jsonstream.END,
        jsonstream.Whole([7]),
        jsonstream.END,
    ]


_KNOWN_READERS: dict[str, tuple[Callable[[str], BucketReader[Any]], Any]] = {
    "usage": (
        lambda where: UsageBucket(where, "completions", 3600),
        _bucket(_usage_result(), 3600),
    ),
    "costs": (lambda where: CostBucket(where), _bucket(_cost_result(), DAY)),
}
"""Per reader that takes known digests: how to build it, and its buckets."""


def _read_known(
    body: bytes,
    batch: int,
    known: Container[bytes],
    reader: Callable[[str], BucketReader[Any]],
) -> list[tuple[Outcome, list[tuple[bytes, int]]]]:
    """Read a page as `fetch_usage_parts` and `fetch_cost_parts` do: each bucket's
    outcome, and its batches' digests with how many lines each gave (negative: not
    parsed)."""
    parts = stream_parts(
        [body], "data", "results", lambda k, v: None, batch_bytes=batch, digests=True
    )
    read: list[tuple[Outcome, list[tuple[bytes, int]]]] = []
    while True:
        bucket = reader(f"w: data[{len(read)}]")
        bucket.known = known
        if not _read_bucket(parts, bucket):
            return read
        read.append((_outcome(bucket.finish), list(bucket.batches)))


def _unstamped(lines: Iterable[Any]) -> list[Any]:
    """The lines without their start (`start` or `day`, their first field)."""
    return [line._replace(**{line._fields[0]: 0}) for line in lines]


@pytest.mark.parametrize("kind", sorted(_KNOWN_READERS))
@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(min_value=0, max_value=3000),
    keep=st.sets(st.integers(min_value=0, max_value=30)),
)
def test_known_batches_stand_for_the_lines_they_gave(
    kind: str, data: st.DataObject, batch: int, keep: set[int]
) -> None:
    """Read again with some digests of the good buckets' batches known, a page
    gives the same outcome bucket by bucket: a bad bucket fails as it did, and a
    good bucket's lines are, batch by batch in order, those parsed and those its
    known batches gave before, which are not parsed."""
    reader, bucket = _KNOWN_READERS[kind]
    body = _page(data.draw(st.lists(bucket, max_size=4)))
    first = _read_known(body, batch, (), reader)
    gave: dict[bytes, list[Any]] = {}
    for outcome, batches in first:
        if outcome[0] == "ok":
            lines = iter(outcome[2])
            for digest, count in batches:
                assert count >= 0
                gave[digest] = _unstamped(itertools.islice(lines, count))
    known = {d for i, d in enumerate(sorted(gave)) if i in keep}
    second = _read_known(body, batch, known, reader)
    for (one, batches_one), (two, batches_two) in zip(first, second, strict=True):
        if one[0] != "ok":
            assert two == one
            continue
        assert two[:2] == one[:2]
        assert [d for d, _ in batches_two] == [d for d, _ in batches_one]
        lines = iter(two[2])
        rebuilt: list[Any] = []
        for digest, count in batches_two:
            assert (count < 0) == (digest in known)
            rebuilt += gave[digest] if count < 0 else itertools.islice(lines, count)
        assert _unstamped(rebuilt) == _unstamped(one[2])
