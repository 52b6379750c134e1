"""A usage bucket's results read by the reader's quick path give what the full
check of each result gives: the same lines, the same error at the same result."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_cost_pusher import parsers
from openai_cost_pusher.model import UsageLine
from openai_cost_pusher.parsers import (
    USAGE_KINDS,
    BadField,
    UsageBucket,
    _usage_line,
    usage_result_object,
)

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC

# few distinct values, so that combinations recur and the reader's caches are hit
_DIM: st.SearchStrategy[Any] = st.sampled_from(
    [None, "", "gpt-4o", "proj_a", "Проект", "\ud800", True, False, 0, 1, 1.0, []]
)
_COUNTER: st.SearchStrategy[Any] = st.sampled_from(
    [None, 0, 1, 7, 2.5, -3, 10**400, True, False, "5", float("nan"), float("inf")]
)
_EXTRA_KEYS = st.sampled_from(
    ["input_cached_tokens", "new_kind_tokens", "num_sessions", "note", "\ud800_tokens"]
)


@st.composite
def _result(draw: st.DrawFn, kind: str) -> Any:
    """A result of `kind`: usually well formed, its keys in any order, with nulls,
    wrong types, huge and non-finite numbers, unknown and odd keys here and there."""
    spec = USAGE_KINDS[kind]
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, 5, "x", [], {}]))
    pairs: dict[str, Any] = {}
    if draw(st.integers(0, 20)):
        pairs["object"] = usage_result_object(kind) if draw(st.integers(0, 20)) else "x"
    well_formed = draw(st.integers(0, 3)) > 0
    for name in spec.required:
        if well_formed:
            pairs[name] = draw(st.integers(0, 10**6))
        elif draw(st.integers(0, 6)):
            pairs[name] = draw(_COUNTER)
    for dim in spec.dims:
        if well_formed:
            pairs[dim] = draw(st.sampled_from([None, "gpt-4o", "proj_a", "Проект"]))
            if dim == "batch":
                pairs[dim] = draw(st.booleans())
        elif draw(st.integers(0, 6)):
            pairs[dim] = draw(_DIM)
    for _ in range(draw(st.integers(0, 2))):
        pairs[draw(_EXTRA_KEYS)] = draw(_COUNTER) if not well_formed else 3
    keys = draw(st.permutations(list(pairs)))
    return {key: pairs[key] for key in keys}


def _reference(items: list[Any], offset: int, kind: str) -> Any:
    """Each result checked in full, one by one: the lines, or the first error."""
    spec, expected = USAGE_KINDS[kind], usage_result_object(kind)
    lines: list[UsageLine] = []
    for i, item in enumerate(items):
        at = f"results[{offset + i}]"
        try:
            lines.append(_usage_line(item, T0, at, kind, spec, expected, {}))
        except BadField as exc:
            return ("bad", exc.path, exc.reason)
    return lines


def _read(reader: UsageBucket, items: list[Any], offset: int) -> Any:
    reader._lines = []
    try:
        reader._add(items, offset, T0)
    except BadField as exc:
        return ("bad", exc.path, exc.reason)
    return list(reader._lines)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["completions", "images", "vector_stores", "web_search_calls"]),
    st.sampled_from([1, 2, parsers.PAIRS_KEPT]),
    st.data(),
)
def test_the_quick_path_gives_what_the_full_check_gives(
    kind: str, kept: int, data: Any
) -> None:
    """Batches read one after the other by readers sharing their tuples (as a
    fetch's buckets do, so that combinations seen before take the quick path) give,
    batch by batch, the reference's lines or its first error, also when the
    combinations kept are emptied often."""
    shared: dict[Any, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parsers, "PAIRS_KEPT", kept)
        for _ in range(data.draw(st.integers(1, 4))):
            items = data.draw(st.lists(_result(kind), max_size=12))
            offset = data.draw(st.integers(0, 5))
            reader = UsageBucket("data[0]", kind, 3600, shared)
            assert _read(reader, items, offset) == _reference(items, offset, kind)
            # emptied at a batch's start once full: one batch more at most
            pairs = shared.get((parsers._PAIRS_OF, kind), [])
            per_dim = USAGE_KINDS[kind].dims
            assert sum(map(len, pairs)) < kept + len(items) * len(per_dim)


def test_a_seen_combination_is_quick_and_an_int_is_no_bool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second result with the same dimensions is read without the full check;
    a `batch` of 1 (equal to True in Python) is still refused after a `true`."""
    checked: list[Any] = []
    full_check = parsers._usage_line

    def spy(item: Any, *args: Any) -> Any:
        checked.append(item)
        return full_check(item, *args)

    monkeypatch.setattr(parsers, "_usage_line", spy)
    kind = "completions"
    good = {
        "object": usage_result_object(kind),
        "input_tokens": 5,
        "output_tokens": 2,
        "num_model_requests": 1,
        "project_id": "proj_a",
        "model": "gpt-4o",
        "batch": True,
    }
    shared: dict[Any, Any] = {}
    reader = UsageBucket("data[0]", kind, 3600, shared)
    reader._add([good, {**good, "input_tokens": 6}], 0, T0)
    first, second = reader._lines
    assert checked == [good]  # the second took the quick path
    assert first.dims == second.dims and first.fields is second.fields
    assert all(a is b for a, b in zip(first.dims, second.dims, strict=True))
    assert second.values == (6.0, 2.0, 1.0)
    # another project's line shares the pairs it has in common with the first,
    # and the combinations kept share their texts (a model's), not the results'
    model = "".join(["gpt-", "4o"])  # equal to the first's, not the same object
    reader._add([{**good, "project_id": "proj_b", "model": model}], 0, T0)
    third = reader._lines[-1]
    assert third.dims != first.dims
    same = [a is b for a, b in zip(first.dims, third.dims, strict=True)]
    assert same == [pair[0] != "project_id" for pair in first.dims]
    at = USAGE_KINDS[kind].dims.index("model")
    models = shared[(parsers._PAIRS_OF, kind)][at]
    assert list(models) == ["gpt-4o"] and next(iter(models)) is not model
    assert models["gpt-4o"] is first.dims[at] is third.dims[at]
    assert _read(reader, [{**good, "batch": 1}], 2) == (
        "bad",
        "results[2].batch",
        "expected a string or null, got 1",
    )
    assert _read(reader, [{**good, "input_tokens": 10**400}], 3) == (
        "bad",
        "results[3].input_tokens",
        "expected a finite number",
    )
