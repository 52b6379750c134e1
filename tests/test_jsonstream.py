"""The incremental page decoder: same result as json.loads, for any chunking."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher.jsonstream import NotAnObject, StreamError, stream_object

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
