"""The incremental page decoder: same result as json.loads, for any chunking and any
scan window, each value decoded exactly once."""

from __future__ import annotations

import itertools
import json
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher import jsonstream
from openai_cost_pusher.jsonstream import (
    MAX_DEPTH,
    Items,
    LimitExceeded,
    NotAnObject,
    StreamError,
    loads,
    stream_object,
    stream_parts,
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _decode(chunks: list[bytes]) -> tuple[list[Any], dict[str, Any]]:
    envelope: dict[str, Any] = {}
    items = list(stream_object(chunks, "data", envelope.__setitem__))
    return items, envelope


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(JSON_VALUES, max_size=6),
    others=st.dictionaries(
        st.sampled_from(["object", "has_more", "next_page", "x"]),
        JSON_VALUES,
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    pretty=st.booleans(),
)
def test_any_chunking_gives_the_same_values(
    data: list[Any], others: dict[str, Any], cuts: list[int], pretty: bool
) -> None:
    """Elements and envelope equal json.loads of the same bytes, however cut."""
    doc = {**others, "data": data}
    body = json.dumps(doc, ensure_ascii=False, indent=2 if pretty else None).encode()
    items, envelope = _decode(_chunks(body, cuts))
    assert items == data
    assert envelope == {**others, "data": []}


def test_one_byte_chunks_split_multibyte_characters() -> None:
    """UTF-8 characters cut between chunks are decoded whole."""
    body = json.dumps(
        {"data": ["ünïcode Проект ✓"], "k": "é"}, ensure_ascii=False
    ).encode()
    items, envelope = _decode([body[i : i + 1] for i in range(len(body))])
    assert items == ["ünïcode Проект ✓"]
    assert envelope == {"data": [], "k": "é"}


def test_a_number_cut_at_a_chunk_end_is_read_whole() -> None:
    """A number at a chunk boundary is not taken before its last digit arrives."""
    items, envelope = _decode([b'{"n": 12', b'34, "data": [5', b"67]}"])
    assert (items, envelope) == ([567], {"n": 1234, "data": []})


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"data": [1, 2',
        b'{"data": [1, 2]} x',
        b'{"data": [1,]}',
        b'{"a": NaN}',
        b'{"a" 1}',
        b'{"a": 1 "b": 2}',
        b"\xff\xfe",
    ],
)
def test_malformed_or_truncated_bodies_raise(body: bytes) -> None:
    """Anything that is not one whole JSON object raises StreamError."""
    with pytest.raises(StreamError):
        _decode([body])


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3", b"null", b"true"])
def test_valid_json_that_is_not_an_object(body: bytes) -> None:
    """A JSON array or scalar is reported as not an object."""
    with pytest.raises(NotAnObject):
        _decode([body])


def test_a_non_array_data_goes_to_the_envelope() -> None:
    """When the array key holds no array, its value is reported for the caller."""
    assert _decode([b'{"data": 5}']) == ([], {"data": 5})


def test_elements_are_handed_over_before_the_body_ends() -> None:
    """The first element is yielded before later chunks are read."""
    read: list[bytes] = []

    def chunks() -> Any:
        for part in (b'{"data": [{"a": 1}, ', b'{"a": 2}]}'):
            read.append(part)
            yield part

    stream = stream_object(chunks(), "data", lambda k, v: None)
    assert next(stream) == {"a": 1}
    assert read == [b'{"data": [{"a": 1}, ']


# ---------------------------------------------------------------------- limits


def _nested(depth: int) -> str:
    """Return arrays nested `depth` levels deep: `[[[]]]` is 3."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_loads_accepts_nesting_up_to_the_limit(depth: int) -> None:
    """64 levels from the top are fine."""
    assert loads(_nested(depth)) == json.loads(_nested(depth))


@pytest.mark.parametrize(
    "text",
    [_nested(MAX_DEPTH + 1), "[" * 100_000, "[" * 100_000 + "]" * 100_000],
    ids=["65", "100k-open", "100k-closed"],
)
def test_loads_refuses_deeper_nesting(text: str) -> None:
    """Past 64 levels: LimitExceeded (a ValueError), never RecursionError."""
    with pytest.raises(LimitExceeded, match=r"^the JSON nests deeper than 64 levels$"):
        loads(text)
    assert issubclass(LimitExceeded, ValueError)


def test_loads_counts_objects_and_arrays_alike() -> None:
    """`{"a": [{"a": ...}]}` counts every object and array as a level."""
    text = '{"a": [' * 32 + "1" + "]}" * 32  # 64 levels
    assert loads(text) is not None
    with pytest.raises(LimitExceeded):
        loads('{"a": [' * 32 + "[1]" + "]}" * 32)


@pytest.mark.parametrize(
    ("element_depth", "ok"),
    [(MAX_DEPTH - 2, True), (MAX_DEPTH - 1, False)],
)
def test_stream_counts_levels_from_the_top(element_depth: int, ok: bool) -> None:
    """An element of `data` sits 2 levels down: it may nest 62 levels itself."""
    body = ('{"data": [' + _nested(element_depth) + "]}").encode()
    if ok:
        assert _decode([body])[0] == [json.loads(_nested(element_depth))]
    else:
        with pytest.raises(LimitExceeded):
            _decode([body])


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [' + b"[" * 100_000,
        b'{"data": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "data": []}',
    ],
    ids=["open", "closed", "envelope"],
)
def test_stream_refuses_deep_nesting_however_cut(body: bytes, chunk: int) -> None:
    """100,000 brackets give LimitExceeded for any chunking, never RecursionError."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    with pytest.raises(LimitExceeded, match="nests deeper than 64 levels"):
        _decode(chunks)


def _limited(chunks: list[bytes], max_chars: int) -> tuple[list[Any], dict[str, Any]]:
    envelope: dict[str, Any] = {}
    items = list(
        stream_object(chunks, "data", envelope.__setitem__, max_value_chars=max_chars)
    )
    return items, envelope


@pytest.mark.parametrize("chunk", [1, 5, 64])
@pytest.mark.parametrize(
    "body",
    [
        b'{"data": ["' + b"a" * 300 + b'"]}',
        b'{"next_page": "' + b"a" * 300 + b'", "data": []}',
        b'{"data": [' + b"1" * 300 + b"]}",
        b'{"data": [1.' + b"5" * 300 + b"]}",
        b'{"data": [' + b"[1, " * 100 + b"1" + b"]" * 101 + b"}",
    ],
    ids=["element", "envelope", "integer", "float", "array"],
)
def test_a_value_past_the_cap_is_refused(body: bytes, chunk: int) -> None:
    """One value longer than `max_value_chars` raises LimitExceeded, however cut."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    with pytest.raises(LimitExceeded, match="longer than 100 characters"):
        _limited(chunks, 100)


def test_many_small_values_in_one_big_chunk_pass_the_cap() -> None:
    """The cap is per value: a body far larger than the cap, in one chunk, is fine."""
    data = [{"i": i} for i in range(1000)]
    body = json.dumps({"data": data, "has_more": False}).encode()
    assert _limited([body], 100) == (data, {"data": [], "has_more": False})


def test_a_value_just_under_the_cap_passes() -> None:
    """A value of exactly the cap, cut into small chunks, is decoded whole."""
    value = "a" * 98  # 100 characters with its quotes
    body = json.dumps({"data": [value]}).encode()
    chunks = [body[i : i + 3] for i in range(0, len(body), 3)]
    assert _limited(chunks, 100) == ([value], {"data": []})


# ------------------------------------------------------- scanning without re-parsing

TRICKY_TEXT = st.text(
    alphabet=st.sampled_from([*'\\"[]{},:ab é✓\n\t', "\U0001f600", "\x00"]),
    max_size=12,
)
"""Strings full of what the scan must not take for structure."""

TRICKY_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY_TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=4)
    ),
    max_leaves=25,
)


@pytest.fixture(name="windows")
def _windows(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the scan's first and largest window (bytes) for one test."""

    def set_windows(first: int, largest: int) -> None:
        monkeypatch.setattr(jsonstream, "FIRST_WINDOW", first)
        monkeypatch.setattr(jsonstream, "MAX_WINDOW", largest)

    return set_windows


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(TRICKY_VALUES, max_size=5),
    other=TRICKY_VALUES,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=16),
    first=st.integers(min_value=1, max_value=9),
    largest=st.sampled_from([1, 2, 5, 16, 64 * 1024]),
    ascii_only=st.booleans(),
)
def test_any_window_and_chunking_give_the_same_values(
    data: list[Any],
    other: Any,
    cuts: list[int],
    first: int,
    largest: int,
    ascii_only: bool,
) -> None:
    """Quotes, backslashes and brackets inside strings, escapes cut between chunks
    or windows: the elements and envelope equal json.loads of the same bytes."""
    doc = {"other": other, "data": data}
    body = json.dumps(doc, ensure_ascii=ascii_only).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonstream, "FIRST_WINDOW", first)
        patch.setattr(jsonstream, "MAX_WINDOW", max(first, largest))
        items, envelope = _decode(_chunks(body, cuts))
    assert items == data
    assert envelope == {"other": other, "data": []}


@pytest.mark.parametrize("window", [1, 2, 3, 1024])
def test_escapes_cut_at_every_byte(windows: Any, window: int) -> None:
    """Runs of backslashes before quotes and brackets, cut at every byte and seen
    through windows of every size, end their strings where json.loads says."""
    windows(window, window)
    data = [
        {"a\\": "\\\\", "b": ['\\"]', '"}{', "\\\\\\"]},
        "\\",
        ['x\\\\"', {"[": "]\\\\\\\\"}],
    ]
    body = json.dumps({"data": data, "n": '\\"\\'}).encode()
    for cut in range(1, len(body)):
        assert _decode([body[:cut], body[cut:]])[0] == data, cut
    assert _decode([body[i : i + 1] for i in range(len(body))])[0] == data


class _CountingDecoder(json.JSONDecoder):
    """A JSONDecoder that records every text it decodes."""

    texts: ClassVar[list[str]] = []

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        self.texts.append(s)
        return super().decode(s, *args, **kwargs)


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_each_value_is_decoded_exactly_once(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """However the body is cut, each key, envelope value and element goes to the
    JSON decoder once, as its own text: nothing is parsed twice."""
    monkeypatch.setattr(json, "JSONDecoder", _CountingDecoder)
    _CountingDecoder.texts = []
    data = [{"start_time": i, "results": [{"s": "[x]" * i}] * 50} for i in range(3)]
    body = json.dumps({"object": "page", "data": data, "has_more": False}).encode()
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    assert _decode(chunks)[0] == data
    expected = ['"object"', '"page"', '"data"', *map(json.dumps, data), '"has_more"']
    assert _CountingDecoder.texts == [*expected, "false"]


@pytest.mark.parametrize("window", [1, 4, 1024])
@pytest.mark.parametrize(
    ("element_depth", "ok"),
    [(MAX_DEPTH - 2, True), (MAX_DEPTH - 1, False)],
)
def test_depth_is_counted_through_windows(
    windows: Any, window: int, element_depth: int, ok: bool
) -> None:
    """The level limit holds exactly however the scan's windows fall, with the
    deepest level in a string-filled object."""
    windows(window, window)
    element: Any = {"s": "[[[{{{"}
    for _ in range(element_depth - 1):
        element = [element, "]]]"]
    body = json.dumps({"data": [element]}).encode()
    if ok:
        assert _decode([body])[0] == [element]
    else:
        with pytest.raises(LimitExceeded, match="nests deeper than 64 levels"):
            _decode([body])


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_the_cap_counts_characters_not_bytes(chunk: int) -> None:
    """100 two-byte characters (with quotes: 100 characters, 200 bytes minus 2)
    pass a cap of 100; one more is refused."""
    for text, ok in (("é" * 98, True), ("é" * 99, False)):
        body = json.dumps({"data": [text]}, ensure_ascii=False).encode()
        chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        if ok:
            assert _limited(chunks, 100) == ([text], {"data": []})
        else:
            with pytest.raises(LimitExceeded, match="longer than 100 characters"):
                _limited(chunks, 100)


@pytest.mark.parametrize("chunk", [1, 2, 3, 64])
@pytest.mark.parametrize(
    "body",
    [
        b'{"data": ["' + b"\\" * 1000,
        b'{"data": ["' + b"\\" * 1001,
        b'{"data": [["' + b"\\" * 1000 + b'"]]}',
        b'{"data": [{"a": "' + b'\\"' * 500,
    ],
    ids=["even-run", "odd-run", "run-in-array", "escaped-quotes"],
)
def test_backslash_runs_past_the_cap_are_refused(body: bytes, chunk: int) -> None:
    """A run of backslashes or escaped quotes is read within the cap, whichever
    byte a chunk ends on: refused past it, never waited on without end."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    with pytest.raises(LimitExceeded, match="longer than 100 characters"):
        _limited(chunks, 100)


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": ["\xff"]}',
        b'{"data": [{"a": "\xed\xa0\x80"}]}',  # an encoded surrogate
        b'{"x": "\xc3"}',
        b'{"data": []\xc2\xa0}',  # a no-break space between values
    ],
)
def test_bytes_that_are_not_utf8_or_not_json_whitespace(body: bytes) -> None:
    """Every value must be UTF-8, and only JSON whitespace may stand between."""
    with pytest.raises(StreamError):
        _decode([body])


def _digested(chunks: list[bytes], batch_bytes: int) -> list[tuple[bytes, list[Any]]]:
    """Return each batch of `results` with its digest, streamed from `chunks`."""
    return [
        (part.digest, part.values)
        for part in stream_parts(
            chunks,
            "data",
            "results",
            lambda key, value: None,
            batch_bytes=batch_bytes,
            digests=True,
        )
        if isinstance(part, Items)
    ]


def _results_page(marker: str) -> bytes:
    data = [
        {
            "start_time": day,
            "results": [
                {"id": f"r{n}", "note": marker * (n % 5), "v": n} for n in range(60)
            ],
        }
        for day in range(4)
    ]
    return json.dumps({"object": "page", "data": data}).encode()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=30),
    st.sampled_from([64, 700, 1 << 20]),
)
def test_batch_digests_follow_the_bytes_not_the_chunks(
    sizes: list[int], batch_bytes: int
) -> None:
    """The same body gives the same batches and digests however its chunks fall;
    one changed result changes the digest of its batch and of no other."""
    body = _results_page("x")
    whole = _digested([body], batch_bytes)
    chunks, at = [], 0
    for size in itertools.cycle(sizes):
        if at >= len(body):
            break
        chunks.append(body[at : at + size])
        at += size
    assert _digested(chunks, batch_bytes) == whole
    assert all(len(digest) == 16 for digest, _ in whole)
    changed = body.replace(b'"r7"', b'"r8"', 1)  # the first bucket's eighth result
    other = _digested([changed], batch_bytes)
    differing = [
        i for i, (a, b) in enumerate(zip(other, whole, strict=True)) if a[0] != b[0]
    ]
    assert len(differing) == 1


def test_no_digests_unless_asked() -> None:
    """Without `digests`, batches carry an empty digest (no hashing is paid)."""
    parts = stream_parts([_results_page("y")], "data", "results", lambda k, v: None)
    assert {p.digest for p in parts if isinstance(p, Items)} == {b""}
